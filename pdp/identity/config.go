package identity

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Require says what evidence a request's principal needs.
type Require string

const (
	RequireAny      Require = "any"      // a claimed principal is enough (subject to callers rules)
	RequireAttested Require = "attested" // a caller rule must bind the principal, or a token verify it
	RequireVerified Require = "verified" // a verified token must name the principal
)

// Config is the identity section of agentpdp.yaml, as DESIGN.md's
// "Evidence, not claims" names its keys.
type Config struct {
	Require Require        `yaml:"require"`
	JWT     []JWTIssuer    `yaml:"jwt"`
	SPIFFE  []SPIFFEIssuer `yaml:"spiffe"`
	// ClockSkew is how far exp, nbf and iat may be off; default 30s, at most 5m.
	ClockSkew time.Duration `yaml:"clock_skew"`
	// SharedWindow is how long a principal's executables and uids are
	// remembered to flag a shared identity; default 10m, negative disables.
	SharedWindow time.Duration `yaml:"shared_window"`
	// TokenCache keeps tokens that verified, so that a token used again
	// is not checked against its signature again (its times are).
	TokenCache TokenCacheConfig `yaml:"token_cache"`
}

// TokenCacheConfig sizes the cache of verified tokens.
type TokenCacheConfig struct {
	// MaxEntries is how many tokens it holds, least recently used evicted
	// first; unset is DefaultTokenCacheEntries, 0 turns the cache off.
	MaxEntries *int `yaml:"max_entries"`
}

// Entries is MaxEntries, or DefaultTokenCacheEntries when it is unset.
func (c TokenCacheConfig) Entries() int {
	if c.MaxEntries == nil {
		return DefaultTokenCacheEntries
	}
	return *c.MaxEntries
}

// PrincipalRule maps a verified token to a Cedar entity uid.
type PrincipalRule struct {
	Type  string `yaml:"type"`  // the entity type, e.g. Agent
	Claim string `yaml:"claim"` // JWT: the claim whose string value is the id; default sub
	// From is for SPIFFE IDs: "path" takes the ID's path without its
	// leading slash (spiffe://example.org/agent/billing-bot gives
	// agent/billing-bot), "id" the whole SPIFFE ID.
	From string `yaml:"from"`
}

// JWTIssuer is one OAuth/OIDC issuer whose tokens are accepted.
type JWTIssuer struct {
	Name     string `yaml:"name"`
	Issuer   string `yaml:"issuer"`    // pinned: the token's iss must equal it
	JWKSFile string `yaml:"jwks_file"` // a JWKS document on disk
	JWKSURL  string `yaml:"jwks_url"`  // https (or http on loopback)
	// OIDCDiscovery finds jwks_uri at <issuer>/.well-known/openid-configuration.
	OIDCDiscovery bool          `yaml:"oidc_discovery"`
	Audience      string        `yaml:"audience"` // required: the token's aud must contain it
	Principal     PrincipalRule `yaml:"principal"`
	// MaxLifetime refuses tokens whose exp-iat is longer (credential_long_lived).
	MaxLifetime time.Duration `yaml:"max_lifetime"`
	// Refresh is how often keys are fetched again; default 5m.
	Refresh time.Duration `yaml:"refresh"`
	// MaxStale is how long the last good key set serves after refreshes
	// start failing; default 1h. Past it every token of the issuer fails.
	MaxStale time.Duration `yaml:"max_stale"`
}

// SPIFFEIssuer accepts JWT-SVIDs of one trust domain.
type SPIFFEIssuer struct {
	TrustDomain string `yaml:"trust_domain"`
	// WorkloadAPI is the SPIFFE Workload API address (unix:///run/spire/agent.sock);
	// the trust bundle is watched there.
	WorkloadAPI string `yaml:"workload_api"`
	// BundleFile is a SPIFFE bundle (JWKS with use jwt-svid) on disk,
	// instead of the Workload API.
	BundleFile  string        `yaml:"bundle_file"`
	Audience    string        `yaml:"audience"`
	Principal   PrincipalRule `yaml:"principal"`
	MaxLifetime time.Duration `yaml:"max_lifetime"`
	Refresh     time.Duration `yaml:"refresh"` // how often bundle_file is read again; default 5m
	MaxStale    time.Duration `yaml:"max_stale"`
}

const (
	defaultSkew     = 30 * time.Second
	maxSkew         = 5 * time.Minute
	defaultRefresh  = 5 * time.Minute
	defaultMaxStale = time.Hour
	defaultShared   = 10 * time.Minute
)

// Configured reports whether any issuer is configured.
func (c *Config) Configured() bool { return len(c.JWT)+len(c.SPIFFE) > 0 }

// Validate fills defaults and returns an error naming the first bad key.
func (c *Config) Validate() error {
	switch c.Require {
	case "":
		c.Require = RequireAny
	case RequireAny, RequireAttested, RequireVerified:
	default:
		return fmt.Errorf("identity.require %q: want any, attested or verified", c.Require)
	}
	if c.Require == RequireVerified && !c.Configured() {
		return errors.New("identity.require is verified but no identity.jwt or identity.spiffe issuer is configured")
	}
	switch {
	case c.ClockSkew == 0:
		c.ClockSkew = defaultSkew
	case c.ClockSkew < 0 || c.ClockSkew > maxSkew:
		return fmt.Errorf("identity.clock_skew %s: want between 0 and %s", c.ClockSkew, maxSkew)
	}
	if c.SharedWindow == 0 {
		c.SharedWindow = defaultShared
	}
	if n := c.TokenCache.Entries(); n < 0 {
		return fmt.Errorf("identity.token_cache.max_entries %d: want 0 (off) or more", n)
	}
	names := map[string]bool{}
	issuers := map[string]bool{}
	for i := range c.JWT {
		j := &c.JWT[i]
		field := fmt.Sprintf("identity.jwt[%d]", i)
		if j.Name == "" {
			j.Name = j.Issuer
		}
		if names[j.Name] {
			return fmt.Errorf("%s.name %q: used twice", field, j.Name)
		}
		names[j.Name] = true
		if j.Issuer == "" {
			return fmt.Errorf("%s.issuer: required (it is pinned)", field)
		}
		if issuers[j.Issuer] {
			return fmt.Errorf("%s.issuer %q: configured twice", field, j.Issuer)
		}
		issuers[j.Issuer] = true
		n := 0
		for _, set := range []bool{j.JWKSFile != "", j.JWKSURL != "", j.OIDCDiscovery} {
			if set {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("%s: want exactly one of jwks_file, jwks_url, oidc_discovery", field)
		}
		if j.JWKSURL != "" {
			if err := checkFetchURL(j.JWKSURL); err != nil {
				return fmt.Errorf("%s.jwks_url: %w", field, err)
			}
		}
		if j.OIDCDiscovery {
			if err := checkFetchURL(j.Issuer); err != nil {
				return fmt.Errorf("%s.issuer (for oidc_discovery): %w", field, err)
			}
		}
		if j.Audience == "" {
			return fmt.Errorf("%s.audience: required", field)
		}
		if j.Principal.Claim == "" {
			j.Principal.Claim = "sub"
		}
		if j.Principal.From != "" {
			return fmt.Errorf("%s.principal.from: only for spiffe issuers; use claim", field)
		}
		if err := checkType(j.Principal.Type); err != nil {
			return fmt.Errorf("%s.principal.type: %w", field, err)
		}
		if err := durations(&j.MaxLifetime, &j.Refresh, &j.MaxStale); err != nil {
			return fmt.Errorf("%s.%w", field, err)
		}
	}
	domains := map[string]bool{}
	for i := range c.SPIFFE {
		s := &c.SPIFFE[i]
		field := fmt.Sprintf("identity.spiffe[%d]", i)
		td, err := spiffeid.TrustDomainFromString(s.TrustDomain)
		if err != nil {
			return fmt.Errorf("%s.trust_domain %q: %w", field, s.TrustDomain, err)
		}
		s.TrustDomain = td.Name()
		if domains[s.TrustDomain] {
			return fmt.Errorf("%s.trust_domain %q: configured twice", field, s.TrustDomain)
		}
		domains[s.TrustDomain] = true
		if (s.WorkloadAPI == "") == (s.BundleFile == "") {
			return fmt.Errorf("%s: want exactly one of workload_api, bundle_file", field)
		}
		if s.WorkloadAPI != "" && !strings.HasPrefix(s.WorkloadAPI, "unix://") && !strings.HasPrefix(s.WorkloadAPI, "tcp://") {
			return fmt.Errorf("%s.workload_api %q: want unix:///path or tcp://host:port", field, s.WorkloadAPI)
		}
		if s.Audience == "" {
			return fmt.Errorf("%s.audience: required", field)
		}
		switch s.Principal.From {
		case "":
			s.Principal.From = "path"
		case "path", "id":
		default:
			return fmt.Errorf("%s.principal.from %q: want path or id", field, s.Principal.From)
		}
		if s.Principal.Claim != "" {
			return fmt.Errorf("%s.principal.claim: spiffe issuers map the SPIFFE ID; use from", field)
		}
		if err := checkType(s.Principal.Type); err != nil {
			return fmt.Errorf("%s.principal.type: %w", field, err)
		}
		if err := durations(&s.MaxLifetime, &s.Refresh, &s.MaxStale); err != nil {
			return fmt.Errorf("%s.%w", field, err)
		}
	}
	return nil
}

func durations(maxLife, refresh, maxStale *time.Duration) error {
	if *maxLife < 0 {
		return fmt.Errorf("max_lifetime %s: negative", *maxLife)
	}
	switch {
	case *refresh == 0:
		*refresh = defaultRefresh
	case *refresh < time.Second:
		return fmt.Errorf("refresh %s: at least 1s", *refresh)
	}
	switch {
	case *maxStale == 0:
		*maxStale = defaultMaxStale
	case *maxStale < *refresh:
		return fmt.Errorf("max_stale %s: shorter than refresh %s", *maxStale, *refresh)
	}
	return nil
}

func checkType(t string) error {
	if t == "" {
		return errors.New("required (the entity type of the principal, e.g. Agent)")
	}
	if strings.ContainsAny(t, "\" \t\n") || strings.HasSuffix(t, "Action") && (t == "Action" || strings.HasSuffix(t, "::Action")) {
		return fmt.Errorf("%q is not an entity type a principal may have", t)
	}
	return nil
}

// checkFetchURL allows https, and http only to a loopback host (a local
// test issuer): keys fetched in the clear from elsewhere could be anyone's.
func checkFetchURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if host == "localhost" {
			return nil
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			return nil
		}
		return fmt.Errorf("%q: http is allowed only to a loopback host; use https", raw)
	default:
		return fmt.Errorf("%q: want an https URL", raw)
	}
}

// globMatch is path.Match with a malformed pattern matching nothing; the
// patterns are checked when callers rules are loaded.
func globMatch(pattern, s string) bool {
	ok, err := path.Match(pattern, s)
	return err == nil && ok
}
