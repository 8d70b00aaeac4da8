package main

import (
	"crypto/rsa"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/openpubkey/openpubkey/gq"
)

type gqInputs struct {
	jwt []byte
	jwk rsaJWK
	pub *rsa.PublicKey
}

func parseGQFlags(name string, args []string, extra func(*flag.FlagSet)) (*gqInputs, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	jwtPath := fs.String("jwt", "", "file holding an RS256 compact JWT (header.payload.signature)")
	jwkPath := fs.String("jwk", "", "file holding the OP's RSA public JWK (or a JWKS)")
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *jwtPath == "" || *jwkPath == "" || fs.NArg() != 0 {
		return nil, errors.New("need --jwt FILE and --jwk FILE")
	}
	jwt, err := readJWT(*jwtPath)
	if err != nil {
		return nil, err
	}
	key, err := readRSAJWK(*jwkPath, jwt)
	if err != nil {
		return nil, err
	}
	pub, err := key.publicKey()
	if err != nil {
		return nil, err
	}
	return &gqInputs{jwt: jwt, jwk: key, pub: pub}, nil
}

// gqSign is what the Go library's OP wrapper does (providers/gq.go): GQ256-sign the
// RS256 token with the OP key's RFC 7638 thumbprint as `jkt` in the new header.
func (in *gqInputs) gqSign(withJkt bool) ([]byte, error) {
	if !withJkt {
		return gq.GQ256SignJWT(in.pub, in.jwt)
	}
	return gq.GQ256SignJWT(in.pub, in.jwt, gq.WithExtraClaim("jkt", in.jwk.thumbprint()))
}

func runGQSign(args []string) error {
	var noJkt bool
	in, err := parseGQFlags("gqsign", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&noJkt, "no-jkt", false, "leave `jkt` out of the GQ header")
	})
	if err != nil {
		return err
	}
	token, err := in.gqSign(!noJkt)
	if err != nil {
		return err
	}
	_, err = fmt.Println(string(token))
	return err
}

func runGQVerify(args []string) error {
	in, err := parseGQFlags("gqverify", args, nil)
	if err != nil {
		return err
	}
	ok, verr := gq.GQ256VerifyJWT(in.pub, in.jwt)
	res := map[string]any{"ok": ok && verr == nil, "error": ""}
	if verr != nil {
		res["error"] = verr.Error()
	} else if !ok {
		res["error"] = "GQ256 signature does not verify"
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

type benchResult struct {
	SignNsPerOp    int64  `json:"sign_ns_per_op"`
	VerifyNsPerOp  int64  `json:"verify_ns_per_op"`
	SignRawNsPerOp int64  `json:"sign_raw_ns_per_op"`
	Iterations     int    `json:"iterations"`
	GoVersion      string `json:"go_version"`
	ModulusBits    int    `json:"modulus_bits"`
}

// runGQBench times gq.GQ256SignJWT (which includes the library's RS256 check of
// the input token, as the OP wrapper does) and gq.GQ256VerifyJWT, plus the bare
// SignerVerifier.SignJWT without the RS256 check (sign_raw_ns_per_op).
func runGQBench(args []string) error {
	var iterations int
	in, err := parseGQFlags("gqbench", args, func(fs *flag.FlagSet) {
		fs.IntVar(&iterations, "iterations", 100, "operations of each kind to time")
	})
	if err != nil {
		return err
	}
	if iterations < 1 {
		return errors.New("--iterations must be >= 1")
	}
	jkt := gq.WithExtraClaim("jkt", in.jwk.thumbprint())
	sv, err := gq.New256SignerVerifier(in.pub)
	if err != nil {
		return err
	}

	// Warm-up (and correctness check) of each operation.
	token, err := gq.GQ256SignJWT(in.pub, in.jwt, jkt)
	if err != nil {
		return fmt.Errorf("GQ sign: %w", err)
	}
	if ok, err := gq.GQ256VerifyJWT(in.pub, token); err != nil || !ok {
		return fmt.Errorf("GQ token made here does not verify (ok=%v, err=%v)", ok, err)
	}
	if _, err := sv.SignJWT(in.jwt, jkt); err != nil {
		return fmt.Errorf("GQ raw sign: %w", err)
	}

	start := time.Now()
	for range iterations {
		if _, err := gq.GQ256SignJWT(in.pub, in.jwt, jkt); err != nil {
			return err
		}
	}
	signNs := time.Since(start).Nanoseconds() / int64(iterations)

	start = time.Now()
	for range iterations {
		if ok, err := gq.GQ256VerifyJWT(in.pub, token); err != nil || !ok {
			return fmt.Errorf("verify failed during benchmark (ok=%v, err=%v)", ok, err)
		}
	}
	verifyNs := time.Since(start).Nanoseconds() / int64(iterations)

	start = time.Now()
	for range iterations {
		if _, err := sv.SignJWT(in.jwt, jkt); err != nil {
			return err
		}
	}
	signRawNs := time.Since(start).Nanoseconds() / int64(iterations)

	return json.NewEncoder(os.Stdout).Encode(benchResult{
		SignNsPerOp:    signNs,
		VerifyNsPerOp:  verifyNs,
		SignRawNsPerOp: signRawNs,
		Iterations:     iterations,
		GoVersion:      runtime.Version(),
		ModulusBits:    in.pub.N.BitLen(),
	})
}
