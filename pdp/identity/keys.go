package identity

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// unknownKidBackoff is how soon after one refresh a token with a key id
// the set does not hold may trigger another: a rotated-in key is picked up
// at once, a flood of made-up key ids costs one fetch per interval.
const unknownKidBackoff = 10 * time.Second

// maxKeyDoc bounds a JWKS or discovery document.
const maxKeyDoc = 1 << 20

// publicKey is one verification key of a set.
type publicKey struct {
	kid string
	alg string // "" when the JWK does not restrict it
	key crypto.PublicKey
}

// keySet is an issuer's current keys and when they were last fetched.
// Reads take mu; a refresh holds fetchMu across the fetch so that only one
// runs at a time, and swaps the keys in under mu.
type keySet struct {
	refresh, maxStale time.Duration

	fetchMu sync.Mutex

	mu   sync.RWMutex
	keys []publicKey
	have bool // a set was ever loaded
	// gen counts the changes of keys: a store of a set that differs from
	// the one held (a key dropped, added or replaced) bumps it, a refresh
	// that fetched the same keys does not. A cached verification carries
	// the gen of the set that verified it and is used only while it holds.
	gen         uint64
	lastOK      time.Time // the last successful fetch
	lastAttempt time.Time
	lastErr     error
	// A streamed set (the Workload API pushes changes) is fresh while the
	// stream is up, however old its last change; once the stream fails,
	// max_stale counts from downSince.
	streaming bool
	up        bool
	downSince time.Time
}

func newKeySet(refresh, maxStale time.Duration) *keySet {
	if refresh <= 0 {
		refresh = defaultRefresh
	}
	if maxStale <= 0 {
		maxStale = defaultMaxStale
	}
	return &keySet{refresh: refresh, maxStale: maxStale}
}

func (s *keySet) loaded() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.have
}

func (s *keySet) store(keys []publicKey, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.have || !sameKeys(s.keys, keys) {
		s.gen++
	}
	s.keys, s.have, s.lastOK, s.lastAttempt, s.lastErr = keys, true, now, now, nil
	s.up = true
}

func (s *keySet) failed(err error, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastAttempt, s.lastErr = now, err
	if s.up {
		s.up, s.downSince = false, now
	}
}

// due reports whether the set is older than its refresh interval.
func (s *keySet) due(now time.Time) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return now.Sub(s.lastAttempt) >= s.refresh
}

func (s *keySet) mayRetry(now time.Time) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return now.Sub(s.lastAttempt) >= unknownKidBackoff
}

// sameKeys reports whether a and b hold the same keys (kid, alg and public
// key alike), in any order.
func sameKeys(a, b []publicKey) bool {
	if len(a) != len(b) {
		return false
	}
	for _, k := range a {
		found := false
		for _, l := range b {
			if k.kid == l.kid && k.alg == l.alg && equalKeys(k.key, l.key) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// equalKeys compares public keys with their own Equal (every key type
// crypto/* returns has one); a key without it is never equal, which only
// costs a fresh verification.
func equalKeys(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// find returns the key for kid and alg, and the gen of the set it is from.
// A set whose last good fetch is older than maxStale serves nothing:
// failing refreshes may mean the issuer revoked keys we can no longer
// learn about.
func (s *keySet) find(kid, alg string, now time.Time) (crypto.PublicKey, uint64, *TokenError) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.have {
		if s.lastErr != nil {
			return nil, 0, invalid(WhyKeys, "no keys fetched yet: %v", s.lastErr)
		}
		return nil, 0, invalid(WhyKeys, "no keys fetched yet")
	}
	since := s.lastOK
	if s.streaming {
		since = now
		if !s.up {
			since = s.downSince
		}
	}
	if age := now.Sub(since); age > s.maxStale {
		return nil, 0, invalid(WhyKeys, "keys last fetched %s ago (max_stale %s): %v", age.Round(time.Second), s.maxStale, s.lastErr)
	}
	var match []publicKey
	for _, k := range s.keys {
		if (kid == "" || k.kid == kid) && (k.alg == "" || k.alg == alg) {
			match = append(match, k)
		}
	}
	switch {
	case len(match) == 1:
		return match[0].key, s.gen, nil
	case len(match) == 0 && kid != "":
		return nil, 0, invalid(WhyUnknownKey, "no key %q for %s", kid, alg)
	case len(match) == 0:
		return nil, 0, invalid(WhyUnknownKey, "no key for %s", alg)
	default:
		return nil, 0, invalid(WhyUnknownKey, "token names no kid and %d keys fit %s", len(match), alg)
	}
}

// jwksKeys keeps the usable public signature keys of a JWKS: symmetric
// keys and keys for encryption are dropped, private keys reduced to their
// public half.
func jwksKeys(set *jose.JSONWebKeySet) ([]publicKey, error) {
	var out []publicKey
	for _, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" && k.Use != "jwt-svid" {
			continue
		}
		pub := k.Public()
		if pub.Key == nil || !isAsymmetric(pub.Key) {
			continue
		}
		out = append(out, publicKey{kid: k.KeyID, alg: k.Algorithm, key: pub.Key})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no asymmetric signature keys among %d", len(set.Keys))
	}
	return out, nil
}

func isAsymmetric(k any) bool {
	switch k.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return true
	}
	return false
}

// jwtIssuer is one configured OAuth/OIDC issuer and its keys.
type jwtIssuer struct {
	cfg  JWTIssuer
	keys *keySet
	http *http.Client
	log  *slog.Logger
}

// key finds the verification key and the gen of its set, refreshing the
// set first when it is due (unless a refresh is under way) or when kid is
// new to it.
func (i *jwtIssuer) key(ctx context.Context, kid, alg string, now time.Time) (crypto.PublicKey, uint64, *TokenError) {
	if i.keys.due(now) && i.keys.fetchMu.TryLock() {
		i.refreshLocked(ctx, now)
		i.keys.fetchMu.Unlock()
	}
	k, gen, terr := i.keys.find(kid, alg, now)
	if terr == nil || terr.Why != WhyUnknownKey && terr.Why != WhyKeys || !i.keys.mayRetry(now) {
		return k, gen, terr
	}
	i.keys.fetchMu.Lock()
	if i.keys.mayRetry(now) { // no one refreshed while we waited
		i.refreshLocked(ctx, now)
	}
	i.keys.fetchMu.Unlock()
	return i.keys.find(kid, alg, now)
}

func (i *jwtIssuer) refresh(ctx context.Context, now time.Time) error {
	i.keys.fetchMu.Lock()
	defer i.keys.fetchMu.Unlock()
	return i.refreshLocked(ctx, now)
}

func (i *jwtIssuer) refreshLocked(ctx context.Context, now time.Time) error {
	keys, err := i.fetch(ctx)
	if err != nil {
		i.keys.failed(err, now)
		i.log.Warn("refresh keys", "err", err)
		return err
	}
	i.keys.store(keys, now)
	return nil
}

func (i *jwtIssuer) fetch(ctx context.Context) ([]publicKey, error) {
	var doc []byte
	var err error
	switch {
	case i.cfg.JWKSFile != "":
		doc, err = os.ReadFile(i.cfg.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("jwks_file: %w", err)
		}
	case i.cfg.JWKSURL != "":
		if doc, err = i.get(ctx, i.cfg.JWKSURL); err != nil {
			return nil, fmt.Errorf("jwks_url: %w", err)
		}
	default:
		uri, err := i.discover(ctx)
		if err != nil {
			return nil, fmt.Errorf("oidc discovery: %w", err)
		}
		if doc, err = i.get(ctx, uri); err != nil {
			return nil, fmt.Errorf("oidc jwks_uri: %w", err)
		}
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(doc, &set); err != nil {
		return nil, fmt.Errorf("parse JWKS: %w", err)
	}
	return jwksKeys(&set)
}

// discover reads the issuer's OpenID configuration. Its issuer must be the
// configured one exactly (OpenID Connect Discovery 1.0, section 4.3).
func (i *jwtIssuer) discover(ctx context.Context) (string, error) {
	b, err := i.get(ctx, strings.TrimSuffix(i.cfg.Issuer, "/")+"/.well-known/openid-configuration")
	if err != nil {
		return "", err
	}
	var meta struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		return "", fmt.Errorf("parse openid-configuration: %w", err)
	}
	if meta.Issuer != i.cfg.Issuer {
		return "", fmt.Errorf("openid-configuration names issuer %q, want %q", meta.Issuer, i.cfg.Issuer)
	}
	if err := checkFetchURL(meta.JWKSURI); err != nil {
		return "", fmt.Errorf("jwks_uri: %w", err)
	}
	return meta.JWKSURI, nil
}

func (i *jwtIssuer) get(ctx context.Context, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := i.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxKeyDoc+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if len(b) > maxKeyDoc {
		return nil, fmt.Errorf("GET %s: larger than %d bytes", url, maxKeyDoc)
	}
	return b, nil
}

// run refreshes on the issuer's interval until ctx is done.
func (i *jwtIssuer) run(ctx context.Context, now func() time.Time) {
	if !i.keys.loaded() {
		i.refresh(ctx, now())
	}
	t := time.NewTicker(i.keys.refresh)
	defer t.Stop()
	retry := time.NewTimer(time.Second)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			i.refresh(ctx, now())
		case <-retry.C:
			// Until a first set arrives, try again every few seconds.
			if !i.keys.loaded() {
				i.refresh(ctx, now())
				retry.Reset(5 * time.Second)
			}
		}
	}
}

// mapIdentity applies the principal rule: the claim's string value, from
// the current actor (act) when the token is delegated, else from the top.
func (i *jwtIssuer) mapIdentity(std *jwt.Claims, raw rawClaims, id *Identity) *TokenError {
	if std.Issuer != i.cfg.Issuer {
		return invalid(WhyIssuer, "iss %q, want %q", std.Issuer, i.cfg.Issuer)
	}
	id.IssuerName = i.cfg.Name
	from := map[string]any(raw)
	if act, ok := raw["act"].(map[string]any); ok {
		from = act
	}
	v, _ := from[i.cfg.Principal.Claim].(string)
	if v == "" {
		return invalid(WhyClaims, "no string claim %q to map to a principal", i.cfg.Principal.Claim)
	}
	id.PrincipalType, id.PrincipalID = i.cfg.Principal.Type, v
	return nil
}
