package identity

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Source is where a fact a decision used came from.
type Source string

const (
	SourceVerified Source = "verified" // a token checked against a configured issuer
	SourceAttested Source = "attested" // the kernel: SO_PEERCRED, /proc, the caller's cgroup
	SourceTrusted  Source = "trusted"  // the policy directory's entity files, entity providers
	SourceClaimed  Source = "claimed"  // the request
)

// Deny reasons a failed verification gives (DESIGN.md).
const (
	ReasonTokenInvalid        = "token_invalid"
	ReasonCredentialLongLived = "credential_long_lived"
)

// Why a token is invalid: the second word of token_invalid's detail.
const (
	WhyMalformed   = "malformed"
	WhyAlgorithm   = "algorithm"
	WhySignature   = "signature"
	WhyUnknownKey  = "unknown_key"
	WhyKeys        = "keys_unavailable"
	WhyExpired     = "expired"
	WhyNotYetValid = "not_yet_valid"
	WhyIssuedAt    = "issued_at"
	WhyAudience    = "audience"
	WhyIssuer      = "issuer"
	WhyClaims      = "claims"
	WhyLifetime    = "lifetime"
)

// TokenError says why a token was not accepted. Reason is
// ReasonTokenInvalid or ReasonCredentialLongLived; Why is one of the Why
// constants; Detail never quotes the token.
type TokenError struct {
	Reason string
	Why    string
	Detail string
}

func (e *TokenError) Error() string {
	if e.Detail == "" {
		return e.Reason + ": " + e.Why
	}
	return e.Reason + ": " + e.Why + ": " + e.Detail
}

func invalid(why, format string, args ...any) *TokenError {
	return &TokenError{Reason: ReasonTokenInvalid, Why: why, Detail: fmt.Sprintf(format, args...)}
}

// Identity is what a verified token establishes. Times are UTC.
type Identity struct {
	Issuer     string   // iss, or spiffe://<trust domain> for a JWT-SVID without one
	IssuerName string   // the configured issuer's name (the trust domain for SPIFFE)
	Subject    string   // sub: for a delegated token, the person the actors act for
	SPIFFEID   string   // the SVID's SPIFFE ID, for JWT-SVIDs
	Audience   []string // aud
	Scopes     []string // scope (space separated) or scp
	// Actors is the RFC 8693 delegation chain, the current actor first
	// (act.sub, then act.act.sub, …). Empty when the token is not delegated.
	Actors    []string
	ID        string // jti
	IssuedAt  *time.Time
	ExpiresAt *time.Time
	// PrincipalType and PrincipalID are the entity the mapping rule gives:
	// the current actor's when the token is delegated, else the subject's.
	PrincipalType string
	PrincipalID   string
	// Thumbprint is sha256:<hex> of the token's bytes: the log keeps it
	// so that an auditor holding a token can find what it did.
	Thumbprint string
}

// Principal is the mapped principal in Cedar form, Agent::"billing-bot".
func (id *Identity) Principal() string {
	return id.PrincipalType + `::"` + strings.ReplaceAll(strings.ReplaceAll(id.PrincipalID, `\`, `\\`), `"`, `\"`) + `"`
}

// Thumbprint is the SHA-256 of a token as the log records it: of the
// token Verify reads, without surrounding white space (a token file's
// newline), so that the thumbprint of the token an auditor holds finds
// every row it was sent in, however it was padded.
func Thumbprint(token string) string {
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Options are a Verifier's collaborators.
type Options struct {
	Logger *slog.Logger
	Now    func() time.Time // default time.Now
	// HTTPClient fetches JWKS and discovery documents; default one with a
	// 10s timeout that follows no redirect to another host.
	HTTPClient *http.Client
}

// asymmetric is every signature algorithm a token may use: HMAC and "none"
// are refused before any key is looked up, so a public key can never be
// used as an HMAC secret.
var asymmetric = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

// Verifier checks tokens against the configured issuers. Create it with
// New; Run keeps its keys fresh; Verify is safe for concurrent use.
type Verifier struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	jwt    map[string]*jwtIssuer    // by iss
	spiffe map[string]*spiffeIssuer // by trust domain name
	cache  *tokenCache              // nil when identity.token_cache.max_entries is 0
}

// New checks cfg (which Validate must have accepted) and loads what can be
// loaded at once: a jwks_file or bundle_file that cannot be read is an
// error. Keys behind a URL or the Workload API arrive when Run fetches
// them; until then tokens of that issuer fail with keys_unavailable.
func New(ctx context.Context, cfg Config, opts Options) (*Verifier, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Second, CheckRedirect: sameHostRedirect}
	}
	v := &Verifier{cfg: cfg, log: opts.Logger, now: opts.Now, jwt: map[string]*jwtIssuer{}, spiffe: map[string]*spiffeIssuer{}}
	if n := cfg.TokenCache.Entries(); n > 0 {
		v.cache = newTokenCache(n)
	}
	for _, j := range cfg.JWT {
		iss := &jwtIssuer{cfg: j, keys: newKeySet(j.Refresh, j.MaxStale), http: opts.HTTPClient, log: v.log.With("issuer", j.Name)}
		if j.JWKSFile != "" {
			if err := iss.refresh(ctx, opts.Now()); err != nil {
				return nil, fmt.Errorf("identity.jwt %s: %w", j.Name, err)
			}
		}
		v.jwt[j.Issuer] = iss
	}
	for _, s := range cfg.SPIFFE {
		td, err := spiffeid.TrustDomainFromString(s.TrustDomain)
		if err != nil {
			return nil, fmt.Errorf("identity.spiffe %s: %w", s.TrustDomain, err)
		}
		si := &spiffeIssuer{cfg: s, td: td, keys: newKeySet(s.Refresh, s.MaxStale), log: v.log.With("trust_domain", s.TrustDomain)}
		si.keys.streaming = s.WorkloadAPI != ""
		if s.BundleFile != "" {
			if err := si.readBundle(opts.Now()); err != nil {
				return nil, fmt.Errorf("identity.spiffe %s: %w", s.TrustDomain, err)
			}
		}
		v.spiffe[td.Name()] = si
	}
	return v, nil
}

// Config is the configuration the Verifier runs with.
func (v *Verifier) Config() Config { return v.cfg }

// Run fetches and refreshes keys until ctx is done: JWKS URLs and OIDC
// discovery on each issuer's refresh interval, bundle files likewise, and
// the Workload API's bundle stream as it changes. It also drops expired
// tokens from the token cache every minute. It returns when every
// goroutine it started has stopped.
func (v *Verifier) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, iss := range v.jwt {
		wg.Go(func() { iss.run(ctx, v.now) })
	}
	for _, si := range v.spiffe {
		wg.Go(func() { si.run(ctx, v.now) })
	}
	if v.cache != nil {
		wg.Go(func() { v.sweepTokens(ctx) })
	}
	wg.Wait()
}

// Ready waits until every issuer has keys, or ctx ends.
func (v *Verifier) Ready(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		missing := ""
		for _, iss := range v.jwt {
			if !iss.keys.loaded() {
				missing = "identity.jwt " + iss.cfg.Name
			}
		}
		for _, si := range v.spiffe {
			if !si.keys.loaded() {
				missing = "identity.spiffe " + si.cfg.TrustDomain
			}
		}
		if missing == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: no keys yet: %w", missing, ctx.Err())
		case <-t.C:
		}
	}
}

// rawClaims are the claims beyond jwt.Claims that the mapping reads.
type rawClaims map[string]any

// tokenIssuer is what Verify needs of a configured issuer (a JWT issuer or
// a SPIFFE trust domain).
type tokenIssuer interface {
	// key finds the verification key for kid and alg, and the gen of the
	// key set it is from; ctx bounds a refresh it may trigger.
	key(ctx context.Context, kid, alg string, now time.Time) (crypto.PublicKey, uint64, *TokenError)
	// rules are the audience a token must carry and its max_lifetime.
	rules() (audience string, maxLife time.Duration)
	mapIdentity(std *jwt.Claims, raw rawClaims, id *Identity) *TokenError
}

func (i *jwtIssuer) rules() (string, time.Duration)    { return i.cfg.Audience, i.cfg.MaxLifetime }
func (s *spiffeIssuer) rules() (string, time.Duration) { return s.cfg.Audience, s.cfg.MaxLifetime }

// Verify checks token and returns the identity it establishes. Any failure
// is a *TokenError; ctx bounds a key refresh that an unknown key id triggers.
//
// A token that verified before is found in the token cache by the SHA-256
// of its bytes and its signature is not checked again while the key that
// verified it is unchanged; its times (exp, nbf, iat with the skew,
// max_lifetime) and its key's freshness are checked on every call, so a
// cached token is refused exactly when an uncached one would be. The
// Identity returned may share its slices and times with other calls': it
// is read-only.
func (v *Verifier) Verify(ctx context.Context, token string) (*Identity, error) {
	token = strings.TrimSpace(token)
	if token == "" {
		return nil, invalid(WhyMalformed, "empty token")
	}
	if i := strings.IndexFunc(token, notCompact); i >= 0 {
		// go-jose's base64 skips CR and LF: refused here, a token with
		// line breaks inside would verify under another SHA-256 than the
		// token's, the thumbprint the log records.
		return nil, invalid(WhyMalformed, "byte %d is not in a compact JWS (base64url segments joined by dots)", i)
	}
	sum := sha256.Sum256([]byte(token))
	if v.cache != nil {
		if e := v.cache.get(sum); e != nil {
			if id, err, ok := v.reuse(ctx, sum, e); ok {
				v.cache.hits.Add(1)
				return id, err
			}
		}
		v.cache.misses.Add(1)
	}
	e, terr := v.verify(ctx, token, sum)
	if terr != nil {
		return nil, terr
	}
	if v.cache != nil {
		v.cache.add(sum, e)
	}
	id := *e.id
	return &id, nil
}

// reuse answers for a cached token: ok is false when the entry cannot
// answer (the issuer's keys changed, or cannot be had now) and the token
// must be verified afresh, which gives exactly the uncached answer.
func (v *Verifier) reuse(ctx context.Context, sum [32]byte, e *cachedToken) (_ *Identity, _ error, ok bool) {
	now := v.now()
	_, gen, terr := e.iss.key(ctx, e.kid, e.alg, now)
	if terr != nil || gen != e.gen {
		v.cache.remove(sum)
		return nil, nil, false
	}
	if terr := v.checkTimes(&e.times, now, e.maxLife); terr != nil {
		// Time only moves on: an entry past its exp is of no more use.
		v.cache.remove(sum)
		return nil, terr, true
	}
	id := *e.id
	return &id, nil, true
}

// verify checks token in full: its form, its signature with the issuer's
// key, its times, audience and mapping. sum is its SHA-256.
func (v *Verifier) verify(ctx context.Context, token string, sum [32]byte) (*cachedToken, *TokenError) {
	tok, err := jwt.ParseSigned(token, asymmetric)
	if err != nil {
		if strings.Contains(err.Error(), "unexpected signature algorithm") {
			return nil, invalid(WhyAlgorithm, "only asymmetric signatures (RS*, PS*, ES*, EdDSA) are accepted")
		}
		return nil, invalid(WhyMalformed, "not a signed JWT (compact JWS)")
	}
	if len(tok.Headers) != 1 {
		return nil, invalid(WhyMalformed, "want one signature, got %d", len(tok.Headers))
	}
	hdr := tok.Headers[0]
	if typ, ok := hdr.ExtraHeaders[jose.HeaderType].(string); ok && !acceptedTyp(typ) {
		return nil, invalid(WhyMalformed, "typ %q is not a JWT", typ)
	}
	// The unverified iss and sub only choose which keys to try; nothing
	// read here is used unless the signature verifies.
	var peek jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&peek); err != nil {
		return nil, invalid(WhyMalformed, "claims are not a JSON object of JWT claims")
	}
	now := v.now()
	var iss tokenIssuer
	if ji := v.jwt[peek.Issuer]; ji != nil {
		iss = ji
	} else if si := v.spiffeFor(peek); si != nil {
		iss = si
	} else if peek.Issuer == "" {
		return nil, invalid(WhyIssuer, "no iss, and sub is not a SPIFFE ID of a configured trust domain")
	} else {
		return nil, invalid(WhyIssuer, "issuer %q is not configured", peek.Issuer)
	}
	audience, maxLife := iss.rules()
	key, gen, terr := iss.key(ctx, hdr.KeyID, hdr.Algorithm, v.now())
	if terr != nil {
		return nil, terr
	}
	var std jwt.Claims
	raw := rawClaims{}
	if err := tok.Claims(key, &std, &raw); err != nil {
		return nil, invalid(WhySignature, "signature does not verify with key %q", hdr.KeyID)
	}
	if terr := v.checkTimes(&std, now, maxLife); terr != nil {
		return nil, terr
	}
	if !slices.Contains([]string(std.Audience), audience) {
		return nil, invalid(WhyAudience, "audience %q not in the token's aud %q", audience, []string(std.Audience))
	}
	id := &Identity{
		Issuer:     std.Issuer,
		Subject:    std.Subject,
		Audience:   []string(std.Audience),
		ID:         std.ID,
		IssuedAt:   timeOf(std.IssuedAt),
		ExpiresAt:  timeOf(std.Expiry),
		Scopes:     scopes(raw),
		Thumbprint: "sha256:" + hex.EncodeToString(sum[:]),
	}
	actors, terr := actorChain(raw)
	if terr != nil {
		return nil, terr
	}
	id.Actors = actors
	if terr := iss.mapIdentity(&std, raw, id); terr != nil {
		return nil, terr
	}
	return &cachedToken{
		id:      id,
		times:   jwt.Claims{Expiry: std.Expiry, NotBefore: std.NotBefore, IssuedAt: std.IssuedAt},
		maxLife: maxLife,
		iss:     iss,
		kid:     hdr.KeyID,
		alg:     hdr.Algorithm,
		gen:     gen,
		until:   std.Expiry.Time().Add(v.cfg.ClockSkew),
	}, nil
}

// notCompact reports whether r is outside a compact JWS's alphabet:
// base64url without padding, and the dots between segments (RFC 7515
// §7.1, §2).
func notCompact(r rune) bool {
	return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
}

func acceptedTyp(typ string) bool {
	switch strings.ToLower(strings.TrimPrefix(strings.ToLower(typ), "application/")) {
	case "jwt", "jose", "at+jwt":
		return true
	}
	return false
}

// checkTimes applies exp, nbf and iat with the configured skew, and
// max_lifetime. exp is required: a token that never expires is exactly the
// persistent credential that weakens a trail.
func (v *Verifier) checkTimes(c *jwt.Claims, now time.Time, maxLife time.Duration) *TokenError {
	skew := v.cfg.ClockSkew
	if c.Expiry == nil {
		return invalid(WhyClaims, "no exp")
	}
	exp := c.Expiry.Time()
	if !now.Before(exp.Add(skew)) {
		return invalid(WhyExpired, "expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if c.NotBefore != nil && now.Add(skew).Before(c.NotBefore.Time()) {
		return invalid(WhyNotYetValid, "not valid before %s", c.NotBefore.Time().UTC().Format(time.RFC3339))
	}
	if c.IssuedAt != nil && now.Add(skew).Before(c.IssuedAt.Time()) {
		return invalid(WhyIssuedAt, "issued in the future, at %s", c.IssuedAt.Time().UTC().Format(time.RFC3339))
	}
	if maxLife > 0 {
		// Without iat the lifetime is unknowable; count it from nbf, and
		// failing that refuse: a bound that cannot be checked is no bound.
		start := c.IssuedAt
		if start == nil {
			start = c.NotBefore
		}
		if start == nil {
			return &TokenError{Reason: ReasonCredentialLongLived, Why: WhyLifetime, Detail: fmt.Sprintf("no iat or nbf; max_lifetime is %s", maxLife)}
		}
		if life := exp.Sub(start.Time()); life > maxLife {
			return &TokenError{Reason: ReasonCredentialLongLived, Why: WhyLifetime, Detail: fmt.Sprintf("lives %s; max_lifetime is %s", life, maxLife)}
		}
	}
	return nil
}

func timeOf(d *jwt.NumericDate) *time.Time {
	if d == nil {
		return nil
	}
	t := d.Time().UTC()
	return &t
}

// scopes reads OAuth's space-separated scope, or scp as a string or list.
func scopes(raw rawClaims) []string {
	if s, ok := raw["scope"].(string); ok {
		return strings.Fields(s)
	}
	switch s := raw["scp"].(type) {
	case string:
		return strings.Fields(s)
	case []any:
		out := make([]string, 0, len(s))
		for _, v := range s {
			if str, ok := v.(string); ok {
				out = append(out, str)
			}
		}
		return out
	}
	return nil
}

// maxActors bounds the RFC 8693 act nesting a token may carry.
const maxActors = 16

// actorChain reads RFC 8693's act claim: act.sub is the current actor,
// act.act.sub the one before it, and so on.
func actorChain(raw rawClaims) ([]string, *TokenError) {
	var out []string
	cur, ok := raw["act"]
	for ok {
		obj, isObj := cur.(map[string]any)
		if !isObj {
			return nil, invalid(WhyClaims, "act is not an object")
		}
		sub, _ := obj["sub"].(string)
		if sub == "" {
			return nil, invalid(WhyClaims, "act without a sub")
		}
		if len(out) == maxActors {
			return nil, invalid(WhyClaims, "act nested deeper than %d", maxActors)
		}
		out = append(out, sub)
		cur, ok = obj["act"]
	}
	return out, nil
}

func (v *Verifier) spiffeFor(peek jwt.Claims) *spiffeIssuer {
	if !strings.HasPrefix(peek.Subject, "spiffe://") {
		return nil
	}
	id, err := spiffeid.FromString(peek.Subject)
	if err != nil {
		return nil
	}
	return v.spiffe[id.TrustDomain().Name()]
}

func sameHostRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("too many redirects")
	}
	if req.URL.Host != via[0].URL.Host || req.URL.Scheme != via[0].URL.Scheme {
		return fmt.Errorf("redirect to %s://%s refused: keys are fetched from the configured host only", req.URL.Scheme, req.URL.Host)
	}
	return nil
}
