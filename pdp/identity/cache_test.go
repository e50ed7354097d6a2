package identity_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp/identity"
)

// cacheSize sets identity.token_cache.max_entries.
func cacheSize(n int) func(*identity.Config) {
	return func(c *identity.Config) { c.TokenCache.MaxEntries = &n }
}

// pair is two verifiers on one clock and one set of keys: v with the token
// cache (default size), u without. Whatever v answers, u must answer alike.
func pair(t *testing.T, clk *clock, ss ...*pdptest.Signer) (v, u *identity.Verifier) {
	t.Helper()
	v, _ = fileVerifier(t, clk, ss...)
	u, _ = fileVerifierWith(t, clk, cacheSize(0), ss...)
	return v, u
}

// sameAnswer verifies tok with both and checks that they agree: both
// refuse with the same reason, why and text, or both accept.
func sameAnswer(t *testing.T, v, u *identity.Verifier, tok string) (*identity.Identity, error) {
	t.Helper()
	id, err := v.Verify(context.Background(), tok)
	_, uerr := u.Verify(context.Background(), tok)
	if fmt.Sprint(err) != fmt.Sprint(uerr) {
		t.Fatalf("with the cache: %v; without: %v", err, uerr)
	}
	return id, err
}

func wantStats(t *testing.T, v *identity.Verifier, hits, misses uint64, entries int) {
	t.Helper()
	if got, want := v.TokenCacheStats(), (identity.TokenCacheStats{Hits: hits, Misses: misses, Entries: entries}); got != want {
		t.Fatalf("token cache %+v, want %+v", got, want)
	}
}

func TestTokenCache_ExpiryWhileCached(t *testing.T) {
	clk := newClock()
	key := pdptest.NewSigner(t, "k1")
	v, u := pair(t, clk, key)
	tok := key.Sign(t, std("https://idp.example", "billing-bot", t0, 10*time.Minute)) // exp t0+10m; skew 30s
	if _, err := sameAnswer(t, v, u, tok); err != nil {
		t.Fatal(err)
	}
	wantStats(t, v, 0, 1, 1)
	// The last instant the skew allows. The keys were refreshed meanwhile
	// (refresh 5m) and are the same, so the entry still serves.
	clk.Add(10*time.Minute + 30*time.Second - time.Nanosecond)
	if _, err := sameAnswer(t, v, u, tok); err != nil {
		t.Fatal(err)
	}
	wantStats(t, v, 1, 1, 1)
	clk.Add(time.Nanosecond)
	_, err := sameAnswer(t, v, u, tok)
	wantInvalid(t, err, identity.ReasonTokenInvalid, identity.WhyExpired)
	wantStats(t, v, 2, 1, 0) // refused from the cache, and dropped
	_, err = sameAnswer(t, v, u, tok)
	wantInvalid(t, err, identity.ReasonTokenInvalid, identity.WhyExpired)
}

func TestTokenCache_NotBeforeAndIssuedAt(t *testing.T) {
	clk := newClock()
	key := pdptest.NewSigner(t, "k1")
	v, u := pair(t, clk, key)
	t.Run("NotYetValidThenValid", func(t *testing.T) {
		c := std("https://idp.example", "billing-bot", t0, 10*time.Minute)
		c.NotBefore = jwt.NewNumericDate(t0.Add(5 * time.Minute))
		tok := key.Sign(t, c)
		_, err := sameAnswer(t, v, u, tok)
		wantInvalid(t, err, identity.ReasonTokenInvalid, identity.WhyNotYetValid)
		if n := v.TokenCacheStats().Entries; n != 0 {
			t.Fatalf("a refused token was cached (%d entries)", n)
		}
		clk.Add(5*time.Minute - 30*time.Second) // nbf within the skew
		if _, err := sameAnswer(t, v, u, tok); err != nil {
			t.Fatal(err)
		}
		// The clock steps back (an NTP correction): the cached token is
		// not valid yet again.
		clk.Add(-time.Minute)
		_, err = sameAnswer(t, v, u, tok)
		wantInvalid(t, err, identity.ReasonTokenInvalid, identity.WhyNotYetValid)
	})
	t.Run("IssuedInTheFutureAfterAStepBack", func(t *testing.T) {
		now := clk.Now()
		c := std("https://idp.example", "billing-bot", now, 10*time.Minute)
		c.NotBefore = nil
		tok := key.Sign(t, c)
		if _, err := sameAnswer(t, v, u, tok); err != nil {
			t.Fatal(err)
		}
		hits := v.TokenCacheStats().Hits
		clk.Add(-time.Minute)
		_, err := sameAnswer(t, v, u, tok)
		wantInvalid(t, err, identity.ReasonTokenInvalid, identity.WhyIssuedAt)
		if v.TokenCacheStats().Hits != hits+1 {
			t.Fatal("the refusal did not come from the cached entry")
		}
	})
}

// The issuer's keys cannot be refreshed: a cached token serves while the
// last good set does (max_stale), then is refused keys_unavailable as an
// uncached one is.
func TestTokenCache_MaxStale(t *testing.T) {
	clk := newClock()
	key := pdptest.NewSigner(t, "k1")
	jwks := ""
	stale := func(size int) func(*identity.Config) {
		return func(c *identity.Config) {
			c.TokenCache.MaxEntries = &size
			c.JWT[0].Refresh, c.JWT[0].MaxStale = time.Minute, 10*time.Minute
			if jwks != "" { // both read one file, so that their errors read alike
				c.JWT[0].JWKSFile = jwks
			}
		}
	}
	v, jwks := fileVerifierWith(t, clk, stale(identity.DefaultTokenCacheEntries), key)
	u, _ := fileVerifierWith(t, clk, stale(0), key)
	tok := key.Sign(t, std("https://idp.example", "billing-bot", t0, 30*time.Minute))
	if _, err := sameAnswer(t, v, u, tok); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(jwks); err != nil {
		t.Fatal(err)
	}
	clk.Add(2 * time.Minute) // the refresh is due and fails: the last set serves
	if _, err := sameAnswer(t, v, u, tok); err != nil {
		t.Fatal(err)
	}
	wantStats(t, v, 1, 1, 1)
	clk.Add(9 * time.Minute) // 11m since the last good read > max_stale 10m
	_, err := sameAnswer(t, v, u, tok)
	wantInvalid(t, err, identity.ReasonTokenInvalid, identity.WhyKeys)
}

func TestTokenCache_MaxLifetime(t *testing.T) {
	clk := newClock()
	key := pdptest.NewSigner(t, "k1")
	v, u := pair(t, clk, key)
	tok := key.Sign(t, std("https://idp.example", "billing-bot", t0, 2*time.Hour)) // max_lifetime 1h
	for range 3 {
		_, err := sameAnswer(t, v, u, tok)
		wantInvalid(t, err, identity.ReasonCredentialLongLived, identity.WhyLifetime)
	}
	wantStats(t, v, 0, 3, 0)
	fits := key.Sign(t, std("https://idp.example", "billing-bot", t0, time.Hour))
	for range 2 {
		if _, err := sameAnswer(t, v, u, fits); err != nil {
			t.Fatal(err)
		}
	}
	wantStats(t, v, 1, 4, 1)
}

// A token that shares anything but all its bytes with a cached one is
// verified in full.
func TestTokenCache_OtherTokensStillChecked(t *testing.T) {
	clk := newClock()
	key := pdptest.NewSigner(t, "k1")
	v, u := pair(t, clk, key)
	good := key.Sign(t, std("https://idp.example", "billing-bot", t0, 10*time.Minute))
	if _, err := sameAnswer(t, v, u, good); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	other := key.Sign(t, std("https://idp.example", "deploy-bot", t0, 10*time.Minute))
	wrongAud := std("https://idp.example", "billing-bot", t0, 10*time.Minute)
	wrongAud.Audience = jwt.Audience{"someone-else"}
	cases := []struct {
		name, tok, why string
	}{
		{"WrongAudience", key.Sign(t, wrongAud), identity.WhyAudience},
		{"WrongIssuer", key.Sign(t, std("https://evil.example", "billing-bot", t0, 10*time.Minute)), identity.WhyIssuer},
		{"OtherClaimsSameSignature", parts[0] + "." + strings.Split(other, ".")[1] + "." + parts[2], identity.WhySignature},
		{"OneByteOfTheClaims", parts[0] + "." + oneByte(t, parts[1]) + "." + parts[2], identity.WhySignature},
		{"OneByteOfTheSignature", parts[0] + "." + parts[1] + "." + flip(parts[2], 10), identity.WhySignature},
		{"SameClaimsOtherKey", pdptest.NewSigner(t, "k1").Sign(t, std("https://idp.example", "billing-bot", t0, 10*time.Minute)), identity.WhySignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for range 2 {
				_, err := sameAnswer(t, v, u, c.tok)
				wantInvalid(t, err, identity.ReasonTokenInvalid, c.why)
			}
		})
	}
	if n := v.TokenCacheStats().Entries; n != 1 {
		t.Fatalf("%d entries, want the good token's only", n)
	}
}

// oneByte changes the last byte of the sub billing-bot in a JWT's
// base64url claims.
func oneByte(t *testing.T, claims string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(claims)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte(`"billing-bot"`))
	if i < 0 {
		t.Fatalf("no billing-bot in %s", b)
	}
	b[i+len(`"billing-bot`)-1] = 'u'
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestTokenCache_KeyRotation(t *testing.T) {
	for _, c := range []struct {
		name string
		why  string
		// next is the issuer's key set after the rotation.
		next func(t *testing.T) *pdptest.Signer
	}{
		// The key id stays, the key behind it changes: only the key set's
		// generation tells the cached verification is void.
		{"KeyReplaced", identity.WhySignature, func(t *testing.T) *pdptest.Signer { return pdptest.NewSigner(t, "k1") }},
		{"KeyRemoved", identity.WhyUnknownKey, func(t *testing.T) *pdptest.Signer { return pdptest.NewSigner(t, "k2") }},
	} {
		t.Run(c.name, func(t *testing.T) {
			clk := newClock()
			k1 := pdptest.NewSigner(t, "k1")
			v, path := fileVerifier(t, clk, k1)
			tok := k1.Sign(t, std("https://idp.example", "billing-bot", t0, 10*time.Minute))
			for range 2 {
				if _, err := v.Verify(context.Background(), tok); err != nil {
					t.Fatal(err)
				}
			}
			wantStats(t, v, 1, 1, 1)
			next := c.next(t)
			if err := os.WriteFile(path, pdptest.JWKS(t, next), 0o600); err != nil {
				t.Fatal(err)
			}
			clk.Add(5*time.Minute + time.Second) // the JWKS file's refresh is due: Verify reads it
			_, err := v.Verify(context.Background(), tok)
			wantInvalid(t, err, identity.ReasonTokenInvalid, c.why)
			if _, err := v.Verify(context.Background(), next.Sign(t, std("https://idp.example", "billing-bot", clk.Now(), 5*time.Minute))); err != nil {
				t.Fatalf("the new key's token: %v", err)
			}
		})
	}
}

// docs/identity.md and docs/design.md: a refresh that adds a key to the
// issuer's set voids its cached tokens too (the token verifies again, in
// full: a miss), and one that fetches the same keys does not (a hit).
func TestTokenCache_KeyAddedVoidsSameKeysKeep(t *testing.T) {
	clk := newClock()
	k1, k2 := pdptest.NewSigner(t, "k1"), pdptest.NewSigner(t, "k2")
	v, path := fileVerifier(t, clk, k1)
	tok := k1.Sign(t, std("https://idp.example", "billing-bot", t0, 20*time.Minute))
	verify := func() {
		t.Helper()
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	verify()
	verify()
	wantStats(t, v, 1, 1, 1)
	if err := os.WriteFile(path, pdptest.JWKS(t, k1, k2), 0o600); err != nil {
		t.Fatal(err)
	}
	clk.Add(5*time.Minute + time.Second) // the JWKS file's refresh is due
	verify()
	wantStats(t, v, 1, 2, 1) // k2 added: verified in full again
	if err := os.WriteFile(path, pdptest.JWKS(t, k1, k2), 0o600); err != nil {
		t.Fatal(err)
	}
	clk.Add(5*time.Minute + time.Second)
	verify()
	wantStats(t, v, 2, 2, 1) // the same keys: served from the cache
}

func TestTokenCache_SPIFFEBundleUpdate(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "bundle.json")
	writeBundle := func(k *pdptest.Signer) {
		jk := k.JWK()
		jk.Use, jk.Algorithm = "jwt-svid", ""
		b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jk}})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	k := pdptest.NewSigner(t, "svid-k1")
	writeBundle(k)
	cfg := identity.Config{SPIFFE: []identity.SPIFFEIssuer{{TrustDomain: "example.org", BundleFile: path, Audience: "agentpdp",
		Principal: identity.PrincipalRule{Type: "Agent"}, MaxLifetime: time.Hour}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	v, err := identity.New(context.Background(), cfg, identity.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	svid := k.Sign(t, std("", "spiffe://example.org/agent/billing-bot", t0, 10*time.Minute))
	for range 2 {
		if _, err := v.Verify(context.Background(), svid); err != nil {
			t.Fatal(err)
		}
	}
	wantStats(t, v, 1, 1, 1)
	// The trust domain's authority is replaced under the same key id.
	next := pdptest.NewSigner(t, "svid-k1")
	writeBundle(next)
	clk.Add(5*time.Minute + time.Second)
	_, err = v.Verify(context.Background(), svid)
	wantInvalid(t, err, identity.ReasonTokenInvalid, identity.WhySignature)
	if _, err := v.Verify(context.Background(), next.Sign(t, std("", "spiffe://example.org/agent/billing-bot", clk.Now(), 5*time.Minute))); err != nil {
		t.Fatalf("the new authority's SVID: %v", err)
	}
}

func TestTokenCache_Cap(t *testing.T) {
	clk := newClock()
	key := pdptest.NewSigner(t, "k1")
	v, _ := fileVerifierWith(t, clk, cacheSize(20), key)
	toks := make([]string, 400)
	for i := range toks {
		toks[i] = key.Sign(t, std("https://idp.example", fmt.Sprintf("agent-%d", i), t0, 10*time.Minute))
		if _, err := v.Verify(context.Background(), toks[i]); err != nil {
			t.Fatal(err)
		}
	}
	wantStats(t, v, 0, 400, 20)
	// The least recently used went first: the last token is held, the first is not.
	for _, tok := range []string{toks[399], toks[0]} {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	wantStats(t, v, 1, 401, 20)

	t.Run("Off", func(t *testing.T) {
		v, _ := fileVerifierWith(t, clk, cacheSize(0), key)
		for range 3 {
			if _, err := v.Verify(context.Background(), toks[0]); err != nil {
				t.Fatal(err)
			}
		}
		wantStats(t, v, 0, 0, 0)
	})
	t.Run("Default", func(t *testing.T) {
		var c identity.Config
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		if n := c.TokenCache.Entries(); n != 10_000 {
			t.Fatalf("max_entries unset: %d", n)
		}
	})
	t.Run("Negative", func(t *testing.T) {
		c := identity.Config{}
		cacheSize(-1)(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "identity.token_cache.max_entries") {
			t.Fatalf("Validate: %v", err)
		}
	})
}

func TestTokenCache_SweepDropsExpired(t *testing.T) {
	clk := newClock()
	key := pdptest.NewSigner(t, "k1")
	v, _ := fileVerifier(t, clk, key)
	for _, life := range []time.Duration{time.Minute, 10 * time.Minute} {
		if _, err := v.Verify(context.Background(), key.Sign(t, std("https://idp.example", "billing-bot", t0, life))); err != nil {
			t.Fatal(err)
		}
	}
	v.SweepTokenCache()
	wantStats(t, v, 0, 2, 2)
	clk.Add(time.Minute + 30*time.Second) // the first one's exp plus the skew
	v.SweepTokenCache()
	wantStats(t, v, 0, 2, 1)
}

func TestTokenCache_IdentityPerCall(t *testing.T) {
	clk := newClock()
	key := pdptest.NewSigner(t, "k1")
	v, _ := fileVerifier(t, clk, key)
	tok := key.Sign(t, std("https://idp.example", "billing-bot", t0, 10*time.Minute))
	first, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	first.PrincipalID, first.Subject = "mallory", "mallory"
	second, err := v.Verify(context.Background(), tok) // from the cache
	if err != nil {
		t.Fatal(err)
	}
	second.PrincipalID, second.Subject = "mallory", "mallory"
	again, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	wantStats(t, v, 2, 1, 1)
	if again.Principal() != `Agent::"billing-bot"` || again.Subject != "billing-bot" {
		t.Errorf("a caller's change to its Identity reached the next caller: %+v", again)
	}
	if again.Thumbprint != identity.Thumbprint(tok) {
		t.Errorf("thumbprint %s, want %s", again.Thumbprint, identity.Thumbprint(tok))
	}
}

// 64 clients verify 50 tokens (and forgeries of them) while the keys are
// refreshed and the cache swept: every answer is the one an uncached
// verification gives. Run with -race.
func TestTokenCache_Concurrent(t *testing.T) {
	clk := newClock()
	key := pdptest.NewSigner(t, "k1")
	v, _ := fileVerifierWith(t, clk, func(c *identity.Config) { c.JWT[0].Refresh = time.Second }, key)
	toks := make([]string, 50)
	forged := make([]string, 50)
	for i := range toks {
		toks[i] = key.Sign(t, std("https://idp.example", fmt.Sprintf("agent-%d", i), t0, time.Hour))
		p := strings.Split(toks[i], ".")
		forged[i] = p[0] + "." + strings.Split(key.Sign(t, std("https://idp.example", "root", t0, time.Hour)), ".")[1] + "." + p[2]
	}
	const clients, rounds = 64, 60
	var wg sync.WaitGroup
	errs := make(chan error, clients*rounds)
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Go(func() { // keys refreshed (the same keys) and the cache swept as the clock runs
		for range 100 { // 200s: the tokens live an hour however slow the machine
			select {
			case <-stop:
				return
			default:
			}
			clk.Add(2 * time.Second)
			v.SweepTokenCache()
			time.Sleep(time.Millisecond)
		}
	})
	for c := range clients {
		wg.Go(func() {
			for r := range rounds {
				i := (c + r) % len(toks)
				if r%5 == 4 {
					if _, err := v.Verify(context.Background(), forged[i]); err == nil {
						errs <- fmt.Errorf("forgery of token %d accepted", i)
					}
					continue
				}
				id, err := v.Verify(context.Background(), toks[i])
				switch {
				case err != nil:
					errs <- fmt.Errorf("token %d: %v", i, err)
				case id.PrincipalID != fmt.Sprintf("agent-%d", i):
					errs <- fmt.Errorf("token %d verified as %s", i, id.PrincipalID)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	bg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	s := v.TokenCacheStats()
	if s.Hits+s.Misses != clients*rounds || s.Hits == 0 || s.Misses < uint64(len(toks)) || s.Entries != len(toks) {
		t.Errorf("token cache %+v after %d verifications of %d tokens", s, clients*rounds, len(toks))
	}
}
