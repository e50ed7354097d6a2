package identity

import (
	"context"
	"crypto"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// spiffeIssuer accepts the JWT-SVIDs of one trust domain, with its JWT
// authorities from the Workload API or a bundle file.
type spiffeIssuer struct {
	cfg  SPIFFEIssuer
	td   spiffeid.TrustDomain
	keys *keySet
	log  *slog.Logger
}

func bundleKeys(b *jwtbundle.Bundle) []publicKey {
	auth := b.JWTAuthorities()
	out := make([]publicKey, 0, len(auth))
	for kid, k := range auth {
		if isAsymmetric(k) {
			out = append(out, publicKey{kid: kid, key: k})
		}
	}
	return out
}

func (s *spiffeIssuer) readBundle(now time.Time) error {
	b, err := spiffebundle.Load(s.td, s.cfg.BundleFile)
	if err != nil {
		err = fmt.Errorf("bundle_file: %w", err)
		s.keys.failed(err, now)
		return err
	}
	keys := bundleKeys(b.JWTBundle())
	if len(keys) == 0 {
		err := fmt.Errorf("bundle_file %s: no JWT authorities for %s", s.cfg.BundleFile, s.td)
		s.keys.failed(err, now)
		return err
	}
	s.keys.store(keys, now)
	return nil
}

// key finds a JWT authority and the gen of its bundle; JWT-SVIDs always
// name their key (kid), and an authority carries no alg of its own.
func (s *spiffeIssuer) key(_ context.Context, kid, _ string, now time.Time) (crypto.PublicKey, uint64, *TokenError) {
	if kid == "" {
		return nil, 0, invalid(WhyMalformed, "JWT-SVID without a kid")
	}
	if s.cfg.BundleFile != "" && s.keys.due(now) && s.keys.fetchMu.TryLock() {
		s.readBundle(now)
		s.keys.fetchMu.Unlock()
	}
	return s.keys.find(kid, "", now)
}

// run re-reads the bundle file on its interval, or follows the Workload
// API's JWT bundle stream (go-spiffe reconnects with backoff), until ctx
// is done.
func (s *spiffeIssuer) run(ctx context.Context, now func() time.Time) {
	if s.cfg.BundleFile != "" {
		t := time.NewTicker(s.keys.refresh)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.keys.fetchMu.Lock()
				s.readBundle(now())
				s.keys.fetchMu.Unlock()
			}
		}
	}
	for ctx.Err() == nil {
		client, err := workloadapi.New(ctx, workloadapi.WithAddr(s.cfg.WorkloadAPI), workloadapi.WithLogger(spiffeLogger{s.log}))
		if err != nil {
			s.keys.failed(fmt.Errorf("workload API %s: %w", s.cfg.WorkloadAPI, err), now())
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
			}
			continue
		}
		err = client.WatchJWTBundles(ctx, bundleWatcher{s: s, now: now})
		client.Close()
		if ctx.Err() == nil {
			s.log.Warn("workload API watch ended", "err", err)
		}
	}
}

// A watched bundle stays good for as long as the stream is up: the
// Workload API pushes changes, so staleness is counted from the last
// update or error, and the stream's updates refresh lastOK.
type bundleWatcher struct {
	s   *spiffeIssuer
	now func() time.Time
}

func (w bundleWatcher) OnJWTBundlesUpdate(set *jwtbundle.Set) {
	b, ok := set.Get(w.s.td)
	if !ok {
		w.s.keys.failed(fmt.Errorf("workload API sent no bundle for %s", w.s.td), w.now())
		return
	}
	w.s.keys.store(bundleKeys(b), w.now())
	w.s.log.Debug("JWT bundle updated", "authorities", len(b.JWTAuthorities()))
}

func (w bundleWatcher) OnJWTBundlesWatchError(err error) {
	w.s.keys.failed(fmt.Errorf("workload API: %w", err), w.now())
}

// mapIdentity checks the SVID's SPIFFE ID and maps it to a principal.
func (s *spiffeIssuer) mapIdentity(std *jwt.Claims, _ rawClaims, id *Identity) *TokenError {
	sid, err := spiffeid.FromString(std.Subject)
	if err != nil || sid.TrustDomain() != s.td {
		return invalid(WhyIssuer, "sub is not a SPIFFE ID of %s", s.td)
	}
	id.SPIFFEID = sid.String()
	id.IssuerName = s.td.Name()
	if id.Issuer == "" {
		id.Issuer = s.td.IDString()
	}
	pid := sid.String()
	if s.cfg.Principal.From == "path" {
		pid = strings.TrimPrefix(sid.Path(), "/")
		if pid == "" {
			return invalid(WhyClaims, "SPIFFE ID %s has no path to map to a principal", sid)
		}
	}
	id.PrincipalType, id.PrincipalID = s.cfg.Principal.Type, pid
	return nil
}

// spiffeLogger routes go-spiffe's logging through slog.
type spiffeLogger struct{ l *slog.Logger }

func (l spiffeLogger) Debugf(f string, a ...any) { l.l.Debug(fmt.Sprintf(f, a...)) }
func (l spiffeLogger) Infof(f string, a ...any)  { l.l.Info(fmt.Sprintf(f, a...)) }
func (l spiffeLogger) Warnf(f string, a ...any)  { l.l.Warn(fmt.Sprintf(f, a...)) }
func (l spiffeLogger) Errorf(f string, a ...any) { l.l.Warn(fmt.Sprintf(f, a...)) }
