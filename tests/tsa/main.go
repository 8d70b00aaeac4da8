// Command opk-tsa serves sigstore's timestamp authority (github.com/sigstore/timestamp-authority)
// on one loopback address for opk-sign's tests and demo: the upstream REST API, handlers and
// in-memory signer (an ephemeral root, intermediate and time-stamping certificate, served at
// GET /api/v1/timestamp/certchain), configured as `timestamp-server serve --timestamp-signer
// memory` configures them. It leaves out what the upstream command adds around the API and what
// would stop two instances from running side by side: a Prometheus listener fixed on :2112 of
// every interface, and monitoring of public NTP servers.
package main

import (
	"flag"
	"time"

	"github.com/sigstore/timestamp-authority/v2/pkg/log"
	"github.com/sigstore/timestamp-authority/v2/pkg/server"
	"github.com/spf13/viper"
)

func main() {
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 0, "port to listen on")
	flag.Parse()

	log.ConfigureLogger("prod")
	// The settings pkg/api reads, with the upstream command's defaults.
	for name, value := range map[string]any{
		"timestamp-signer":          "memory",
		"timestamp-signer-hash":     "sha256",
		"enforce-intermediate-eku":  true,
		"include-chain-in-response": false,
		"use-http-201":              false,
		"allow-custom-extensions":   false,
		"default-policy-oid":        "1.3.6.1.4.1.57264.2",
		"accepted-policy-oids":      []string{"1.3.6.1.4.1.57264.2"},
		"max-request-body-size":     uint64(1 << 20),
	} {
		viper.Set(name, value)
	}

	api := server.NewRestAPIServer(*host, *port, []string{"http"}, false, 30*time.Second, 30*time.Second)
	api.GracefulTimeout = time.Second
	defer func() { _ = api.Shutdown() }()
	if err := api.Serve(); err != nil {
		log.Logger.Fatal(err)
	}
}
