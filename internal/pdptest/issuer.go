package pdptest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/agentpdp/agentpdp/pdp/identity"
)

// The test issuer's pinned issuer and the audience its tokens carry.
const (
	IssuerURL = "https://idp.example"
	Audience  = "agentpdp"
)

// Signer is a test issuer's signing key with its JWK key id.
type Signer struct {
	KID string
	Alg jose.SignatureAlgorithm
	Key crypto.Signer
}

// NewSigner is a fresh ES256 (P-256) key named kid.
func NewSigner(t testing.TB, kid string) *Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &Signer{KID: kid, Alg: jose.ES256, Key: k}
}

// JWK is the signer's public key as a JWKS member.
func (s *Signer) JWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: s.Key.Public(), KeyID: s.KID, Algorithm: string(s.Alg), Use: "sig"}
}

// Sign makes a compact JWT (typ JWT, the signer's kid) of claims, which
// may mix jwt.Claims and maps; later members override earlier ones.
func (s *Signer) Sign(t testing.TB, claims ...any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), s.KID)
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: s.Alg, Key: s.Key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	b := jwt.Signed(sg)
	for _, c := range claims {
		b = b.Claims(c)
	}
	tok, err := b.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// JWKS is the JSON Web Key Set of the signers' public keys.
func JWKS(t testing.TB, ss ...*Signer) []byte {
	t.Helper()
	var set jose.JSONWebKeySet
	for _, s := range ss {
		set.Keys = append(set.Keys, s.JWK())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Issuer is a JWT issuer for tests: one signer (kid "k1") and a JWKS file
// of its public key in a temp dir, issuer IssuerURL, audience Audience.
type Issuer struct {
	*Signer
	JWKSFile string
}

// NewIssuer writes a fresh key's JWKS file.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	s := NewSigner(t, "k1")
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, JWKS(t, s), 0o600); err != nil {
		t.Fatal(err)
	}
	return &Issuer{Signer: s, JWKSFile: path}
}

// Token is a JWT for subject sub, issued now, living life (negative:
// already expired), with jti "jti-<sub>" and the extra claims (scope, act…).
func (is *Issuer) Token(t testing.TB, sub string, life time.Duration, extra map[string]any) string {
	t.Helper()
	now := time.Now()
	claims := jwt.Claims{Issuer: IssuerURL, Subject: sub, Audience: jwt.Audience{Audience}, ID: "jti-" + sub,
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(life))}
	if extra == nil {
		return is.Sign(t, claims)
	}
	return is.Sign(t, claims, extra)
}

// Config is the issuer as identity configures it: named idp, the sub
// claim mapped to an Agent, max_lifetime one hour.
func (is *Issuer) Config() identity.Config {
	return identity.Config{JWT: []identity.JWTIssuer{{Name: "idp", Issuer: IssuerURL, JWKSFile: is.JWKSFile, Audience: Audience,
		Principal: identity.PrincipalRule{Claim: "sub", Type: "Agent"}, MaxLifetime: time.Hour}}}
}

// YAML is Config as the daemon's config file says it.
func (is *Issuer) YAML() string {
	return fmt.Sprintf("identity:\n  jwt:\n    - {name: idp, issuer: %q, jwks_file: %q, audience: %s, principal: {claim: sub, type: Agent}, max_lifetime: 1h}\n",
		IssuerURL, is.JWKSFile, Audience)
}

// Verifier checks the issuer's tokens against its JWKS file.
func (is *Issuer) Verifier(t testing.TB) *identity.Verifier {
	t.Helper()
	cfg := is.Config()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	v, err := identity.New(t.Context(), cfg, identity.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return v
}
