package identity_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp/identity"
)

// FuzzVerifyCacheMatchesUncached: whatever token arrives, at whatever
// time, a Verifier with the token cache answers as one without it (the
// same refusal, or the same identity), and a token it accepts is written
// in the compact JWS alphabet and recorded by the thumbprint of its bytes
// without surrounding white space.
func FuzzVerifyCacheMatchesUncached(f *testing.F) {
	clk := newClock()
	key := pdptest.NewSigner(f, "k1")
	v, _ := fileVerifier(f, clk, key)
	u, _ := fileVerifierWith(f, clk, cacheSize(0), key)
	seeds := []string{
		key.Sign(f, std("https://idp.example", "billing-bot", t0, 10*time.Minute)),
		key.Sign(f, std("https://idp.example", "billing-bot", t0, 2*time.Hour)),
		key.Sign(f, std("https://idp.example", "billing-bot", t0.Add(time.Hour), 10*time.Minute)),
		key.Sign(f, std("https://other.example", "billing-bot", t0, 10*time.Minute)),
		key.Sign(f, std("https://idp.example", "alice", t0, 10*time.Minute), map[string]any{"act": map[string]any{"sub": "billing-bot"}, "scope": "a b"}),
		key.Sign(f, jwt.Claims{Issuer: "https://idp.example", Subject: "billing-bot", Audience: jwt.Audience{"agentpdp"}, IssuedAt: jwt.NewNumericDate(t0)}),
		pdptest.NewSigner(f, "k1").Sign(f, std("https://idp.example", "billing-bot", t0, 10*time.Minute)),
	}
	for i, s := range seeds {
		f.Add(s, uint32(i*60))
		f.Add(" "+s+"\n", uint32(700))
	}
	f.Fuzz(func(t *testing.T, tok string, after uint32) {
		clk.ns.Store(t0.Add(time.Duration(after%(3*3600)) * time.Second).UnixNano())
		// Twice with the cache: a miss, then a hit when it verified.
		for range 2 {
			id, err := v.Verify(context.Background(), tok)
			uid, uerr := u.Verify(context.Background(), tok)
			if fmt.Sprint(err) != fmt.Sprint(uerr) {
				t.Fatalf("with the cache: %v; without: %v", err, uerr)
			}
			if err != nil {
				return
			}
			if id.Principal() != uid.Principal() || id.Thumbprint != uid.Thumbprint || fmt.Sprint(id.Scopes, id.Actors, id.ExpiresAt) != fmt.Sprint(uid.Scopes, uid.Actors, uid.ExpiresAt) {
				t.Fatalf("with the cache: %+v; without: %+v", id, uid)
			}
			if id.Thumbprint != identity.Thumbprint(tok) {
				t.Fatalf("thumbprint %s, want that of the token, %s", id.Thumbprint, identity.Thumbprint(tok))
			}
			if trimmed := strings.TrimSpace(tok); strings.Trim(trimmed, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") != "" {
				t.Fatalf("accepted a token outside the compact alphabet: %q", tok)
			}
		}
	})
}
