package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/openpubkey/openpubkey/client"
	"github.com/openpubkey/openpubkey/providers"
	"github.com/openpubkey/openpubkey/providers/mocks"
)

// githubClaims are the claims GitHub Actions puts in a job's ID token, for a push
// to main of octo-org/octo-repo (iss, aud, iat, exp come from the mock OP).
func githubClaims(now time.Time) map[string]any {
	return map[string]any{
		"sub":                   "repo:octo-org/octo-repo:ref:refs/heads/main",
		"jti":                   randomHex(16),
		"nbf":                   now.Add(-5 * time.Second).Unix(),
		"actor":                 "octocat",
		"actor_id":              "583231",
		"base_ref":              "",
		"check_run_id":          "40000000001",
		"event_name":            "push",
		"head_ref":              "",
		"job_workflow_ref":      "octo-org/octo-repo/.github/workflows/release.yml@refs/heads/main",
		"job_workflow_sha":      "4e1243bd22c66e76c2ba9eddc1f91394e57f9f83",
		"ref":                   "refs/heads/main",
		"ref_protected":         "true",
		"ref_type":              "branch",
		"repository":            "octo-org/octo-repo",
		"repository_id":         "123456789",
		"repository_owner":      "octo-org",
		"repository_owner_id":   "987654",
		"repository_visibility": "public",
		"run_attempt":           "1",
		"run_id":                "9876543210",
		"run_number":            "42",
		"runner_environment":    "github-hosted",
		"sha":                   "4e1243bd22c66e76c2ba9eddc1f91394e57f9f83",
		"workflow":              "release",
		"workflow_ref":          "octo-org/octo-repo/.github/workflows/release.yml@refs/heads/main",
		"workflow_sha":          "4e1243bd22c66e76c2ba9eddc1f91394e57f9f83",
	}
}

func randomHex(n int) string {
	buf := make([]byte, n)
	if _, err := rand.Read(buf); err != nil {
		panic(err)
	}
	return hex.EncodeToString(buf)
}

// defaultMessage is a simple-signing style payload with a random digest, so every
// minted set signs a different message.
func defaultMessage() []byte {
	return []byte(`{"critical":{"identity":{"docker-reference":"localhost:5000/octo-org/octo-repo"},` +
		`"image":{"docker-manifest-digest":"sha256:` + randomHex(32) + `"},` +
		`"type":"opk-sign container image signature"},"optional":{}}`)
}

// mockGithubOP is one mock OpenID provider (2 RSA-2048 keys) shared by all sets of a run.
type mockGithubOP struct {
	issuer   string
	op       *providers.MockProvider
	backend  *mocks.MockProviderBackend
	template *mocks.IDTokenTemplate
	jwks     []byte
}

func newMockGithubOP(issuer string) (*mockGithubOP, error) {
	verifierOpts := providers.ProviderVerifierOpts{
		CommitType:        providers.CommitTypesEnum.AUD_CLAIM,
		SkipClientIDCheck: true,
		GQOnly:            true,
	}
	op, backend, template, err := providers.NewMockProvider(providers.MockProviderOpts{
		Issuer:       issuer,
		ClientID:     "test_client_id",
		GQSign:       true,
		NumKeys:      2,
		CommitType:   providers.CommitTypesEnum.AUD_CLAIM,
		VerifierOpts: verifierOpts,
	})
	if err != nil {
		return nil, err
	}
	// GitHub's ID tokens carry no nonce; their header is {alg, kid, typ, x5t}.
	template.NoNonce = true
	template.ExtraProtectedClaims = map[string]any{"x5t": b64.EncodeToString([]byte(randomHex(10)))}
	jwks, err := backend.GetJwks()
	if err != nil {
		return nil, fmt.Errorf("mock OP JWKS: %w", err)
	}
	return &mockGithubOP{issuer: issuer, op: op, backend: backend, template: template, jwks: jwks}, nil
}

type mintMeta struct {
	Issuer     string `json:"issuer"`
	MessageB64 string `json:"message_b64"`
	OpKid      string `json:"op_kid"`
	PktHash    string `json:"pkt_hash"`
	CicAlg     string `json:"cic_alg"`
}

// mintOne runs the OpenPubkey client against the mock OP and writes one set of files to dir.
func (m *mockGithubOP) mintOne(ctx context.Context, dir string, message []byte) error {
	m.template.ExtraClaims = githubClaims(time.Now())
	c, err := client.New(m.op)
	if err != nil {
		return err
	}
	pkt, err := c.Auth(ctx)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	pktJSON, err := pkt.MarshalJSON()
	if err != nil {
		return err
	}
	compact, err := pkt.Compact()
	if err != nil {
		return err
	}
	osm, err := pkt.NewSignedMessage(message, c.GetSigner())
	if err != nil {
		return err
	}
	pktHash, err := pkt.Hash()
	if err != nil {
		return err
	}
	// The raw RS256 ID token (same OP key, same claim set, aud = the commitment) and
	// the OP's public JWK, for gqsign/gqbench and for Python-side GQ signing.
	m.template.AddCommit(mustAud(pkt.Payload))
	rsTokens, err := m.template.IssueTokens()
	if err != nil {
		return err
	}
	rsaPub, ok := m.template.SigningKey.Public().(*rsa.PublicKey)
	if !ok {
		return errors.New("mock OP key is not RSA")
	}
	opJWK, err := json.Marshal(jwkFromRSA(rsaPub, m.template.KeyID))
	if err != nil {
		return err
	}
	meta, err := json.MarshalIndent(mintMeta{
		Issuer:     m.issuer,
		MessageB64: base64.StdEncoding.EncodeToString(message),
		OpKid:      m.template.KeyID,
		PktHash:    pktHash,
		CicAlg:     string(c.GetAlg()),
	}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := map[string][]byte{
		"pktoken.json":    pktJSON,
		"pktoken.compact": compact,
		"osm":             osm,
		"message":         message,
		"jwks.json":       m.jwks,
		"meta.json":       append(meta, '\n'),
		"idtoken.jwt":     rsTokens.IDToken,
		"op_jwk.json":     opJWK,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func mustAud(payload []byte) string {
	var claims struct {
		Aud string `json:"aud"`
	}
	_ = json.Unmarshal(payload, &claims)
	return claims.Aud
}

func runMint(args []string) error {
	fs := flag.NewFlagSet("mint", flag.ContinueOnError)
	out := fs.String("out", "", "output directory (required)")
	issuer := fs.String("issuer", defaultIssuer, "issuer (iss) of the mock OP")
	count := fs.Int("count", 1, "number of sets; N > 1 writes DIR/0 ... DIR/N-1")
	message := fs.String("message", "", "message to sign (default: a simple-signing document with a random digest)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || *count < 1 || fs.NArg() != 0 {
		return errors.New("need --out DIR and --count >= 1")
	}
	m, err := newMockGithubOP(*issuer)
	if err != nil {
		return err
	}
	ctx := context.Background()
	for i := range *count {
		dir := *out
		if *count > 1 {
			dir = filepath.Join(*out, strconv.Itoa(i))
		}
		msg := []byte(*message)
		if *message == "" {
			msg = defaultMessage()
		}
		if err := m.mintOne(ctx, dir, msg); err != nil {
			return fmt.Errorf("set %d: %w", i, err)
		}
	}
	return nil
}
