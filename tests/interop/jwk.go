package main

import (
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
)

// rsaJWK is the subset of an RSA public JWK (RFC 7517/7518) the harness reads and writes.
type rsaJWK struct {
	Kty string `json:"kty"`
	Kid string `json:"kid,omitempty"`
	Alg string `json:"alg,omitempty"`
	Use string `json:"use,omitempty"`
	N   string `json:"n"`
	E   string `json:"e"`
}

var b64 = base64.RawURLEncoding

func jwkFromRSA(pub *rsa.PublicKey, kid string) rsaJWK {
	return rsaJWK{
		Kty: "RSA",
		Kid: kid,
		Alg: "RS256",
		Use: "sig",
		N:   b64.EncodeToString(pub.N.Bytes()),
		E:   b64.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}
}

func (k rsaJWK) publicKey() (*rsa.PublicKey, error) {
	if k.Kty != "RSA" {
		return nil, fmt.Errorf("JWK kty is %q, want RSA", k.Kty)
	}
	n, err := b64.DecodeString(k.N)
	if err != nil {
		return nil, fmt.Errorf("JWK n: %w", err)
	}
	e, err := b64.DecodeString(k.E)
	if err != nil {
		return nil, fmt.Errorf("JWK e: %w", err)
	}
	eInt := new(big.Int).SetBytes(e)
	if len(n) == 0 || !eInt.IsInt64() || eInt.Int64() > 1<<31-1 {
		return nil, errors.New("JWK n or e out of range")
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(eInt.Int64())}, nil
}

// thumbprint is the RFC 7638 SHA-256 thumbprint of the key, base64url without padding
// (what the Go library puts in the GQ header's `jkt`).
func (k rsaJWK) thumbprint() string {
	canonical := fmt.Sprintf(`{"e":%q,"kty":"RSA","n":%q}`, k.E, k.N)
	sum := sha256.Sum256([]byte(canonical))
	return b64.EncodeToString(sum[:])
}

// readRSAJWK reads an RSA public JWK from a file. The file may also hold a JWKS
// ({"keys": [...]}); then the key whose kid matches the JWT's header kid (or the
// only key) is used.
func readRSAJWK(path string, jwt []byte) (rsaJWK, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return rsaJWK{}, err
	}
	var set struct {
		Keys []rsaJWK `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err == nil && set.Keys != nil {
		kid := jwtHeaderKid(jwt)
		for _, k := range set.Keys {
			if k.Kid == kid || len(set.Keys) == 1 {
				return k, nil
			}
		}
		return rsaJWK{}, fmt.Errorf("no key with kid %q in %s", kid, path)
	}
	var k rsaJWK
	if err := json.Unmarshal(data, &k); err != nil {
		return rsaJWK{}, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// jwtHeaderKid is the OP key id of a JWT: its header's kid, or for a GQ256 token
// the kid of the original header (which GQ256 carries base64url-encoded in kid).
func jwtHeaderKid(jwt []byte) string {
	header, _, _ := strings.Cut(string(jwt), ".")
	for range 2 {
		raw, err := b64.DecodeString(header)
		if err != nil {
			return ""
		}
		var h struct {
			Alg string `json:"alg"`
			Kid string `json:"kid"`
		}
		if err := json.Unmarshal(raw, &h); err != nil || h.Alg != "GQ256" {
			return h.Kid
		}
		header = h.Kid
	}
	return ""
}

func readJWT(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	jwt := strings.TrimSpace(string(data))
	if strings.Count(jwt, ".") != 2 {
		return nil, fmt.Errorf("%s: not a compact JWS (want header.payload.signature)", path)
	}
	return []byte(jwt), nil
}
