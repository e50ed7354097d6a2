package identity_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp/identity"
)

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

type clock struct{ ns atomic.Int64 }

func newClock() *clock               { c := &clock{}; c.ns.Store(t0.UnixNano()); return c }
func (c *clock) Now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Add(d time.Duration) { c.ns.Add(int64(d)) }

func std(iss, sub string, iat time.Time, life time.Duration) jwt.Claims {
	return jwt.Claims{Issuer: iss, Subject: sub, Audience: jwt.Audience{"agentpdp"}, ID: "jti-1",
		IssuedAt: jwt.NewNumericDate(iat), NotBefore: jwt.NewNumericDate(iat), Expiry: jwt.NewNumericDate(iat.Add(life))}
}

func fileVerifier(t testing.TB, clk *clock, ss ...*pdptest.Signer) (*identity.Verifier, string) {
	t.Helper()
	return fileVerifierWith(t, clk, nil, ss...)
}

// fileVerifierWith is fileVerifier with edit applied to the config first.
func fileVerifierWith(t testing.TB, clk *clock, edit func(*identity.Config), ss ...*pdptest.Signer) (*identity.Verifier, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, pdptest.JWKS(t, ss...), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := identity.Config{JWT: []identity.JWTIssuer{{Name: "idp", Issuer: "https://idp.example", JWKSFile: path,
		Audience: "agentpdp", Principal: identity.PrincipalRule{Claim: "sub", Type: "Agent"}, MaxLifetime: time.Hour}}}
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	v, err := identity.New(context.Background(), cfg, identity.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return v, path
}

func wantInvalid(t *testing.T, err error, reason, why string) {
	t.Helper()
	var te *identity.TokenError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v, want a *TokenError %s: %s", err, reason, why)
	}
	if te.Reason != reason || te.Why != why {
		t.Fatalf("err = %v, want %s: %s", err, reason, why)
	}
}

func TestVerifier_JWT(t *testing.T) {
	clk := newClock()
	key := pdptest.NewSigner(t, "k1")
	v, _ := fileVerifier(t, clk, key)
	ctx := context.Background()

	t.Run("Valid", func(t *testing.T) {
		tok := key.Sign(t, std("https://idp.example", "billing-bot", t0.Add(-time.Minute), 10*time.Minute), map[string]any{"scope": "invoices:read invoices:list"})
		id, err := v.Verify(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := id.Principal(), `Agent::"billing-bot"`; got != want {
			t.Errorf("principal = %s, want %s", got, want)
		}
		if got := strings.Join(id.Scopes, ","); got != "invoices:read,invoices:list" {
			t.Errorf("scopes = %s", got)
		}
		if id.Issuer != "https://idp.example" || id.IssuerName != "idp" || id.ID != "jti-1" || id.Subject != "billing-bot" {
			t.Errorf("identity = %+v", id)
		}
		if id.Thumbprint != identity.Thumbprint(tok) || !strings.HasPrefix(id.Thumbprint, "sha256:") {
			t.Errorf("thumbprint = %s", id.Thumbprint)
		}
		if id.ExpiresAt == nil || !id.ExpiresAt.Equal(t0.Add(9*time.Minute)) {
			t.Errorf("expires_at = %v", id.ExpiresAt)
		}
	})
	t.Run("Delegated", func(t *testing.T) {
		tok := key.Sign(t, std("https://idp.example", "alice@example.com", t0, 10*time.Minute),
			map[string]any{"act": map[string]any{"sub": "billing-bot", "act": map[string]any{"sub": "orchestrator"}}})
		id, err := v.Verify(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		if got := id.Principal(); got != `Agent::"billing-bot"` {
			t.Errorf("principal = %s, want the current actor", got)
		}
		if got := strings.Join(id.Actors, ","); got != "billing-bot,orchestrator" {
			t.Errorf("actors = %s", got)
		}
		if id.Subject != "alice@example.com" {
			t.Errorf("subject = %s", id.Subject)
		}
	})
	cases := []struct {
		name        string
		tok         func() string
		reason, why string
	}{
		{"Expired", func() string {
			return key.Sign(t, std("https://idp.example", "b", t0.Add(-20*time.Minute), 10*time.Minute))
		}, identity.ReasonTokenInvalid, identity.WhyExpired},
		{"ExpiredWithinSkewIsValid", nil, "", ""},
		{"NotYetValid", func() string {
			c := std("https://idp.example", "b", t0, 10*time.Minute)
			c.NotBefore = jwt.NewNumericDate(t0.Add(5 * time.Minute))
			return key.Sign(t, c)
		}, identity.ReasonTokenInvalid, identity.WhyNotYetValid},
		{"IssuedInFuture", func() string {
			c := std("https://idp.example", "b", t0.Add(2*time.Minute), 10*time.Minute)
			c.NotBefore = nil
			return key.Sign(t, c)
		}, identity.ReasonTokenInvalid, identity.WhyIssuedAt},
		{"NoExp", func() string {
			c := std("https://idp.example", "b", t0, 0)
			c.Expiry = nil
			return key.Sign(t, c)
		}, identity.ReasonTokenInvalid, identity.WhyClaims},
		{"WrongAudience", func() string {
			c := std("https://idp.example", "b", t0, 10*time.Minute)
			c.Audience = jwt.Audience{"someone-else"}
			return key.Sign(t, c)
		}, identity.ReasonTokenInvalid, identity.WhyAudience},
		{"UnknownIssuer", func() string { return key.Sign(t, std("https://evil.example", "b", t0, 10*time.Minute)) }, identity.ReasonTokenInvalid, identity.WhyIssuer},
		{"WrongKey", func() string {
			other := pdptest.NewSigner(t, "k1") // same kid, different key
			return other.Sign(t, std("https://idp.example", "b", t0, 10*time.Minute))
		}, identity.ReasonTokenInvalid, identity.WhySignature},
		{"UnknownKid", func() string {
			return pdptest.NewSigner(t, "k9").Sign(t, std("https://idp.example", "b", t0, 10*time.Minute))
		}, identity.ReasonTokenInvalid, identity.WhyUnknownKey},
		{"HS256WithThePublicKeyAsSecret", func() string {
			pub, _ := json.Marshal(key.JWK())
			sg, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pub}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
			if err != nil {
				t.Fatal(err)
			}
			tok, err := jwt.Signed(sg).Claims(std("https://idp.example", "b", t0, 10*time.Minute)).Serialize()
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}, identity.ReasonTokenInvalid, identity.WhyAlgorithm},
		{"AlgNone", func() string {
			tok := key.Sign(t, std("https://idp.example", "b", t0, 10*time.Minute))
			parts := strings.Split(tok, ".")
			return "eyJhbGciOiJub25lIn0." + parts[1] + "."
		}, identity.ReasonTokenInvalid, identity.WhyAlgorithm},
		{"Garbage", func() string { return "not-a-token" }, identity.ReasonTokenInvalid, identity.WhyMalformed},
		{"TamperedClaims", func() string {
			tok := key.Sign(t, std("https://idp.example", "b", t0, 10*time.Minute))
			other := key.Sign(t, std("https://idp.example", "deploy-bot", t0, 10*time.Minute))
			p, q := strings.Split(tok, "."), strings.Split(other, ".")
			return p[0] + "." + q[1] + "." + p[2]
		}, identity.ReasonTokenInvalid, identity.WhySignature},
		{"LongLived", func() string { return key.Sign(t, std("https://idp.example", "b", t0, 2*time.Hour)) }, identity.ReasonCredentialLongLived, identity.WhyLifetime},
		{"LongLivedWithoutIat", func() string {
			c := std("https://idp.example", "b", t0, 10*time.Minute)
			c.IssuedAt, c.NotBefore = nil, nil
			return key.Sign(t, c)
		}, identity.ReasonCredentialLongLived, identity.WhyLifetime},
		{"NoPrincipalClaim", func() string { return key.Sign(t, std("https://idp.example", "", t0, 10*time.Minute)) }, identity.ReasonTokenInvalid, identity.WhyClaims},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.tok == nil {
				// exp passed 10s ago: within the default 30s skew.
				tok := key.Sign(t, std("https://idp.example", "b", t0.Add(-10*time.Minute-10*time.Second), 10*time.Minute))
				if _, err := v.Verify(ctx, tok); err != nil {
					t.Fatal(err)
				}
				return
			}
			_, err := v.Verify(ctx, c.tok())
			wantInvalid(t, err, c.reason, c.why)
			if err != nil && strings.Contains(err.Error(), "eyJ") {
				t.Errorf("error quotes the token: %v", err)
			}
		})
	}
}

// issuer is a test OIDC issuer on loopback whose keys can be rotated and
// which can be made to fail.
type issuer struct {
	srv     *httptest.Server
	mu      sync.Mutex
	keys    []*pdptest.Signer
	down    bool
	fetches atomic.Int64
}

func newIssuer(t *testing.T, keys ...*pdptest.Signer) *issuer {
	is := &issuer{keys: keys}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": is.srv.URL, "jwks_uri": is.srv.URL + "/keys"})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		is.fetches.Add(1)
		is.mu.Lock()
		defer is.mu.Unlock()
		if is.down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write(pdptest.JWKS(t, is.keys...))
	})
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	return is
}

func (is *issuer) set(down bool, keys ...*pdptest.Signer) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.down = down
	if keys != nil {
		is.keys = keys
	}
}

func TestVerifier_JWKSRotation(t *testing.T) {
	for _, mode := range []string{"jwks_url", "oidc_discovery"} {
		t.Run(mode, func(t *testing.T) {
			clk := newClock()
			k1, k2 := pdptest.NewSigner(t, "k1"), pdptest.NewSigner(t, "k2")
			is := newIssuer(t, k1)
			j := identity.JWTIssuer{Name: "idp", Issuer: is.srv.URL, Audience: "agentpdp",
				Principal: identity.PrincipalRule{Type: "Agent"}, Refresh: time.Minute, MaxStale: 10 * time.Minute}
			if mode == "jwks_url" {
				j.JWKSURL = is.srv.URL + "/keys"
			} else {
				j.OIDCDiscovery = true
			}
			cfg := identity.Config{JWT: []identity.JWTIssuer{j}}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			v, err := identity.New(context.Background(), cfg, identity.Options{Now: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { v.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
			defer rcancel()
			if err := v.Ready(rctx); err != nil {
				t.Fatal(err)
			}
			tok := func(k *pdptest.Signer) string {
				return k.Sign(t, std(is.srv.URL, "billing-bot", clk.Now(), 5*time.Minute))
			}
			if _, err := v.Verify(ctx, tok(k1)); err != nil {
				t.Fatal(err)
			}
			// The issuer rotates to k2: a token naming the new kid makes
			// the verifier fetch the set again at once, once the backoff
			// since the last fetch has passed.
			is.set(false, k2)
			clk.Add(11 * time.Second)
			if _, err := v.Verify(ctx, tok(k2)); err != nil {
				t.Fatalf("new kid not picked up: %v", err)
			}
			// k1 is gone from the set.
			_, err = v.Verify(ctx, tok(k1))
			wantInvalid(t, err, identity.ReasonTokenInvalid, identity.WhyUnknownKey)
			// A flood of unknown kids does not make a fetch each.
			before := is.fetches.Load()
			for range 20 {
				v.Verify(ctx, tok(pdptest.NewSigner(t, "made-up")))
			}
			if n := is.fetches.Load() - before; n > 1 {
				t.Errorf("%d fetches for 20 unknown kids within the backoff, want at most 1", n)
			}
			// The issuer goes down: the last set keeps serving until max_stale.
			is.set(true)
			clk.Add(2 * time.Minute) // refresh is due: it fails
			if _, err := v.Verify(ctx, tok(k2)); err != nil {
				t.Fatalf("last good set not kept through a failed refresh: %v", err)
			}
			clk.Add(9 * time.Minute) // 11m since the last good fetch > max_stale 10m
			_, err = v.Verify(ctx, tok(k2))
			wantInvalid(t, err, identity.ReasonTokenInvalid, identity.WhyKeys)
			// Back up: the next due refresh restores it.
			is.set(false)
			clk.Add(time.Minute)
			if _, err := v.Verify(ctx, tok(k2)); err != nil {
				t.Fatalf("recovered issuer: %v", err)
			}
		})
	}
}

func TestVerifier_OIDCIssuerMismatch(t *testing.T) {
	k1 := pdptest.NewSigner(t, "k1")
	is := newIssuer(t, k1)
	cfg := identity.Config{JWT: []identity.JWTIssuer{{Name: "idp", Issuer: is.srv.URL + "/other", OIDCDiscovery: true,
		Audience: "agentpdp", Principal: identity.PrincipalRule{Type: "Agent"}}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	v, err := identity.New(context.Background(), cfg, identity.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// discovery under /other 404s; and were it served, its issuer would differ.
	_, err = v.Verify(context.Background(), k1.Sign(t, std(is.srv.URL+"/other", "b", time.Now(), time.Minute)))
	wantInvalid(t, err, identity.ReasonTokenInvalid, identity.WhyKeys)
}

func TestVerifier_SPIFFEBundleFile(t *testing.T) {
	clk := newClock()
	k := pdptest.NewSigner(t, "svid-k1")
	var set jose.JSONWebKeySet
	jk := k.JWK()
	jk.Use, jk.Algorithm = "jwt-svid", ""
	set.Keys = append(set.Keys, jk)
	b, _ := json.Marshal(set)
	path := filepath.Join(t.TempDir(), "bundle.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := identity.Config{SPIFFE: []identity.SPIFFEIssuer{{TrustDomain: "example.org", BundleFile: path, Audience: "agentpdp",
		Principal: identity.PrincipalRule{Type: "Agent"}, MaxLifetime: time.Hour}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	v, err := identity.New(context.Background(), cfg, identity.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Verify(context.Background(), k.Sign(t, std("", "spiffe://example.org/agent/billing-bot", t0, 5*time.Minute)))
	if err != nil {
		t.Fatal(err)
	}
	if got := id.Principal(); got != `Agent::"agent/billing-bot"` {
		t.Errorf("principal = %s", got)
	}
	if id.SPIFFEID != "spiffe://example.org/agent/billing-bot" || id.Issuer != "spiffe://example.org" {
		t.Errorf("identity = %+v", id)
	}
	_, err = v.Verify(context.Background(), k.Sign(t, std("", "spiffe://other.org/agent/billing-bot", t0, 5*time.Minute)))
	wantInvalid(t, err, identity.ReasonTokenInvalid, identity.WhyIssuer)
	_, err = v.Verify(context.Background(), pdptest.NewSigner(t, "svid-k1").Sign(t, std("", "spiffe://example.org/agent/billing-bot", t0, 5*time.Minute)))
	wantInvalid(t, err, identity.ReasonTokenInvalid, identity.WhySignature)
}

func TestVerifier_EdDSAAndRSA(t *testing.T) {
	clk := newClock()
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ed := &pdptest.Signer{KID: "ed", Alg: jose.EdDSA, Key: edKey}
	v, _ := fileVerifier(t, clk, ed)
	if _, err := v.Verify(context.Background(), ed.Sign(t, std("https://idp.example", "b", t0, time.Minute))); err != nil {
		t.Fatal(err)
	}
}

func TestConfig_Validate(t *testing.T) {
	bad := map[string]identity.Config{
		"no audience":   {JWT: []identity.JWTIssuer{{Issuer: "https://a", JWKSFile: "x", Principal: identity.PrincipalRule{Type: "Agent"}}}},
		"no issuer":     {JWT: []identity.JWTIssuer{{JWKSFile: "x", Audience: "a", Principal: identity.PrincipalRule{Type: "Agent"}}}},
		"two sources":   {JWT: []identity.JWTIssuer{{Issuer: "https://a", JWKSFile: "x", JWKSURL: "https://a/k", Audience: "a", Principal: identity.PrincipalRule{Type: "Agent"}}}},
		"http remote":   {JWT: []identity.JWTIssuer{{Issuer: "https://a", JWKSURL: "http://idp.example/k", Audience: "a", Principal: identity.PrincipalRule{Type: "Agent"}}}},
		"action type":   {JWT: []identity.JWTIssuer{{Issuer: "https://a", JWKSFile: "x", Audience: "a", Principal: identity.PrincipalRule{Type: "Action"}}}},
		"verified none": {Require: identity.RequireVerified},
		"bad require":   {Require: "maybe"},
		"bad td":        {SPIFFE: []identity.SPIFFEIssuer{{TrustDomain: "Bad Domain", BundleFile: "x", Audience: "a", Principal: identity.PrincipalRule{Type: "Agent"}}}},
		"bad from":      {SPIFFE: []identity.SPIFFEIssuer{{TrustDomain: "example.org", BundleFile: "x", Audience: "a", Principal: identity.PrincipalRule{Type: "Agent", From: "host"}}}},
		"huge skew":     {ClockSkew: time.Hour},
	}
	for name, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate accepted it", name)
		}
	}
}

// A compact JWS is base64url segments joined by dots (RFC 7515 §7.1), with
// nothing else inside: go-jose's base64 decoding skips CR and LF, so a
// token with line breaks inside verified as the token without them, under
// another SHA-256. The log would record a thumbprint no holder of the
// token computes, and each such spelling would be another cache entry.
// Anything outside the alphabet is malformed, cached or not.
func TestVerify_OnlyTheCompactAlphabet(t *testing.T) {
	clk := newClock()
	key := pdptest.NewSigner(t, "k1")
	v, u := pair(t, clk, key)
	tok := key.Sign(t, std("https://idp.example", "billing-bot", t0, 10*time.Minute))
	if _, err := sameAnswer(t, v, u, tok); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	for name, variant := range map[string]string{
		"LF in the header":         parts[0][:5] + "\n" + parts[0][5:] + "." + parts[1] + "." + parts[2],
		"CRLF before a dot":        parts[0] + "\r\n." + parts[1] + "." + parts[2],
		"CR in the signature":      parts[0] + "." + parts[1] + "." + parts[2][:7] + "\r" + parts[2][7:],
		"LF in the payload":        parts[0] + "." + parts[1][:9] + "\n" + parts[1][9:] + "." + parts[2],
		"padding":                  tok + "=",
		"standard base64 alphabet": parts[0] + "." + parts[1] + "." + strings.NewReplacer("-", "+", "_", "/").Replace(parts[2]) + "+/",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := sameAnswer(t, v, u, variant)
			wantInvalid(t, err, identity.ReasonTokenInvalid, identity.WhyMalformed)
		})
	}
}
