package pdp

import (
	"testing"

	"github.com/agentpdp/agentpdp/pdp/wire"
)

// The labels `agentpdp log show` and the review console print for a row's
// evidence, as both printed them before they shared these functions.
func TestEvidenceLabels(t *testing.T) {
	if got := EntitySource(""); got != "unknown to every source" {
		t.Errorf("EntitySource(\"\") = %q", got)
	}
	if got := EntitySource("trusted"); got != "trusted" {
		t.Errorf("EntitySource(trusted) = %q", got)
	}
	f := &wire.IdentityFacts{Verified: true, Principal: `Agent::"bot"`, Issuer: "https://idp.example", Subject: "alice"}
	if got, want := TokenHolder(f), `Agent::"bot" from https://idp.example`; got != want {
		t.Errorf("TokenHolder = %q, want %q", got, want)
	}
	f.SPIFFEID = "spiffe://example.org/bot"
	if got, want := TokenHolder(f), `Agent::"bot" from https://idp.example (spiffe://example.org/bot)`; got != want {
		t.Errorf("TokenHolder with SPIFFE ID = %q, want %q", got, want)
	}
	for _, c := range []struct {
		actors []string
		want   string
	}{
		{nil, ""},
		{[]string{"bot"}, "bot for alice"},
		{[]string{"bot", "planner", "router"}, "bot (via planner, router) for alice"},
	} {
		f.Actors = c.actors
		if got := DelegationChain(f); got != c.want {
			t.Errorf("DelegationChain(%q) = %q, want %q", c.actors, got, c.want)
		}
	}
}
