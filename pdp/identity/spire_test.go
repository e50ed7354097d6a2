//go:build spire

package identity_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/internal/spiretest"
	"github.com/agentpdp/agentpdp/pdp/identity"
)

// TestSPIRE_JWTSVID verifies JWT-SVIDs a real SPIRE agent issued, with the
// trust bundle watched on the same agent's Workload API.
func TestSPIRE_JWTSVID(t *testing.T) {
	s := spiretest.Start(t)
	id := s.Register("agent/billing-bot", os.Getuid())
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	cfg := identity.Config{SPIFFE: []identity.SPIFFEIssuer{{TrustDomain: spiretest.TrustDomain, WorkloadAPI: s.WorkloadAPI(),
		Audience: "agentpdp", Principal: identity.PrincipalRule{Type: "Agent", From: "path"}, MaxLifetime: time.Hour}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	v, err := identity.New(ctx, cfg, identity.Options{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { v.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
	defer rcancel()
	if err := v.Ready(rctx); err != nil {
		t.Fatal(err)
	}

	tok := s.FetchJWTSVID(ctx, id, "agentpdp")
	got, err := v.Verify(ctx, tok)
	if err != nil {
		t.Fatalf("verify a JWT-SVID from SPIRE: %v", err)
	}
	if got.Principal() != `Agent::"agent/billing-bot"` || got.SPIFFEID != id {
		t.Errorf("identity = %+v", got)
	}
	// An SVID for another audience is refused.
	other := s.FetchJWTSVID(ctx, id, "someone-else")
	_, err = v.Verify(ctx, other)
	if err == nil || !strings.Contains(err.Error(), identity.WhyAudience) {
		t.Errorf("SVID for another audience: %v", err)
	}
	// SPIRE's 5m SVIDs are within a 1m max_lifetime? No: refused.
	short := identity.Config{SPIFFE: []identity.SPIFFEIssuer{{TrustDomain: spiretest.TrustDomain, WorkloadAPI: s.WorkloadAPI(),
		Audience: "agentpdp", Principal: identity.PrincipalRule{Type: "Agent"}, MaxLifetime: time.Minute}}}
	if err := short.Validate(); err != nil {
		t.Fatal(err)
	}
	v2, err := identity.New(ctx, short, identity.Options{})
	if err != nil {
		t.Fatal(err)
	}
	done2 := make(chan struct{})
	go func() { v2.Run(ctx); close(done2) }()
	defer func() { cancel(); <-done2 }()
	if err := v2.Ready(rctx); err != nil {
		t.Fatal(err)
	}
	_, err = v2.Verify(ctx, tok)
	if err == nil || !strings.HasPrefix(err.Error(), identity.ReasonCredentialLongLived) {
		t.Errorf("5m SVID under max_lifetime 1m: %v", err)
	}
}
