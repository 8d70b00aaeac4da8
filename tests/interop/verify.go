package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/openpubkey/openpubkey/discover"
	"github.com/openpubkey/openpubkey/pktoken"
	"github.com/openpubkey/openpubkey/providers"
	"github.com/openpubkey/openpubkey/verifier"
)

// verifyCase is one line of `verify`'s input.
type verifyCase struct {
	Name    string          `json:"name"`
	PKToken string          `json:"pktoken"` // JSON serialization (starts with "{") or compact form
	OSM     string          `json:"osm"`     // optional compact OSM JWS
	JWKS    json.RawMessage `json:"jwks"`    // the OP's JWKS (an object, or a string holding one)
	Issuer  string          `json:"issuer"`  // optional; overrides --issuer
	// Optional expiration policy: "24h" (default, the library's default), "12h",
	// "48h", "1w", "oidc" (exp claim) or "never".
	Expiration string `json:"expiration"`
}

// verifyResult is one line of `verify`'s output. Stage says which step failed:
// "input", "parse", "pktoken" or "osm" ("" when ok).
type verifyResult struct {
	Name       string `json:"name"`
	OK         bool   `json:"ok"`
	Error      string `json:"error"`
	MessageB64 string `json:"message_b64"`
	Stage      string `json:"stage"`
}

var expirationPolicies = map[string]verifier.ExpirationPolicy{
	"":      verifier.ExpirationPolicies.MAX_AGE_24HOURS,
	"24h":   verifier.ExpirationPolicies.MAX_AGE_24HOURS,
	"12h":   verifier.ExpirationPolicies.MAX_AGE_12HOURS,
	"48h":   verifier.ExpirationPolicies.MAX_AGE_48HOURS,
	"1w":    verifier.ExpirationPolicies.MAX_AGE_1WEEK,
	"oidc":  verifier.ExpirationPolicies.OIDC,
	"never": verifier.ExpirationPolicies.NEVER_EXPIRE,
}

func runVerify(args []string) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	issuer := fs.String("issuer", defaultIssuer, "issuer the verifier is configured for (a case's \"issuer\" overrides it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return errors.New("verify takes no arguments; cases are read from stdin")
	}
	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	ctx := context.Background()
	for lineNo := 1; ; lineNo++ {
		line, err := in.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			res := verifyLine(ctx, line, lineNo, *issuer)
			if err := enc.Encode(res); err != nil {
				return err
			}
			if err := out.Flush(); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func verifyLine(ctx context.Context, line []byte, lineNo int, defaultIss string) (res verifyResult) {
	res.Name = fmt.Sprintf("line-%d", lineNo)
	var c verifyCase
	if err := json.Unmarshal(line, &c); err != nil {
		res.Stage, res.Error = "input", fmt.Sprintf("malformed case: %v", err)
		return res
	}
	if c.Name != "" {
		res.Name = c.Name
	}
	defer func() {
		if r := recover(); r != nil {
			res.OK, res.MessageB64 = false, ""
			if res.Stage == "" {
				res.Stage = "pktoken"
			}
			res.Error = fmt.Sprintf("panic: %v", r)
		}
	}()
	iss := defaultIss
	if c.Issuer != "" {
		iss = c.Issuer
	}
	policy, ok := expirationPolicies[c.Expiration]
	if !ok {
		res.Stage, res.Error = "input", fmt.Sprintf("unknown expiration policy %q", c.Expiration)
		return res
	}
	jwks, err := jwksBytes(c.JWKS)
	if err != nil {
		res.Stage, res.Error = "input", err.Error()
		return res
	}

	res.Stage = "parse"
	pkt, err := parsePKToken(c.PKToken)
	if err != nil {
		res.Error = err.Error()
		return res
	}

	res.Stage = "pktoken"
	pv := providers.NewProviderVerifier(iss, providers.ProviderVerifierOpts{
		CommitType:        providers.CommitTypesEnum.AUD_CLAIM,
		GQOnly:            true,
		SkipClientIDCheck: true,
		DiscoverPublicKey: &discover.PublicKeyFinder{
			JwksFunc: func(context.Context, string) ([]byte, error) { return jwks, nil },
		},
	})
	v, err := verifier.New(pv, verifier.WithExpirationPolicy(policy))
	if err != nil {
		res.Error = err.Error()
		return res
	}
	if err := v.VerifyPKToken(ctx, pkt); err != nil {
		res.Error = err.Error()
		return res
	}

	if c.OSM != "" {
		res.Stage = "osm"
		msg, err := pkt.VerifySignedMessage([]byte(c.OSM))
		if err != nil {
			res.Error = err.Error()
			return res
		}
		res.MessageB64 = base64.StdEncoding.EncodeToString(msg)
	}
	res.OK, res.Stage = true, ""
	return res
}

func parsePKToken(s string) (*pktoken.PKToken, error) {
	if s == "" {
		return nil, errors.New("empty pktoken")
	}
	if strings.HasPrefix(strings.TrimSpace(s), "{") {
		var pkt pktoken.PKToken
		if err := json.Unmarshal([]byte(s), &pkt); err != nil {
			return nil, fmt.Errorf("parsing PK token JSON: %w", err)
		}
		return &pkt, nil
	}
	pkt, err := pktoken.NewFromCompact([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("parsing compact PK token: %w", err)
	}
	return pkt, nil
}

// jwksBytes accepts the case's "jwks" as a JSON object or as a string holding the JSON.
func jwksBytes(raw json.RawMessage) ([]byte, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return nil, errors.New(`case has no "jwks"`)
	}
	if trimmed[0] == '"' {
		var s string
		if err := json.Unmarshal(trimmed, &s); err != nil {
			return nil, fmt.Errorf("jwks: %w", err)
		}
		return []byte(s), nil
	}
	return trimmed, nil
}
