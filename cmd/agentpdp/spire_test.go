//go:build spire

package main

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/agentpdp/agentpdp/internal/spiretest"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// TestSPIRE_Daemon: the daemon verifies JWT-SVIDs a real SPIRE agent
// issued, with the bundle it watches on the agent's Workload API, and
// denies requests without one (identity.require: verified).
func TestSPIRE_Daemon(t *testing.T) {
	s := spiretest.Start(t)
	id := s.Register("agent/billing-bot", os.Getuid())
	d := newDaemonDir(t)
	// The policy directory describes the SPIFFE-mapped agent.
	writeFile(t, d.dir+"/policies/spiffe.entities.json", `[{"uid":{"type":"Agent","id":"agent/billing-bot"},"parents":[{"type":"Team","id":"finance"}],
  "attrs":{"owner":{"__entity":{"type":"User","id":"alice@example.com"}},"trust":"standard"}}]`)
	appendConfig(t, d, fmt.Sprintf("identity:\n  require: verified\n  spiffe:\n    - {trust_domain: %s, workload_api: %q, audience: agentpdp, principal: {type: Agent, from: path}, max_lifetime: 1h}\n",
		spiretest.TrustDomain, s.WorkloadAPI()))
	d.start()
	tok := s.FetchJWTSVID(t.Context(), id, "agentpdp")
	req := &wire.Request{Principal: wire.EntityRef{Type: "Agent", ID: "agent/billing-bot"}, Action: wire.EntityRef{Type: "Action", ID: "invoke_tool"},
		Resource: wire.EntityRef{Type: "Tool", ID: "sql.query"}}

	dec, err := client.New(d.sock()).WithToken(client.StaticToken(tok)).Authorize(t.Context(), req)
	if err != nil || dec.Decision != wire.Allow {
		t.Fatalf("with a JWT-SVID from SPIRE: %+v %v", dec, err)
	}
	_, out, _ := runCLI(t, "log", "show", dec.DecisionID, "--db", d.db())
	for _, want := range []string{"verified", id, "sha256:"} {
		if !strings.Contains(out, want) {
			t.Errorf("log show lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, tok) {
		t.Error("log show prints the token")
	}
	// Without a token, or claiming another agent with it: denied.
	dec, err = client.New(d.sock()).Authorize(t.Context(), req)
	if err != nil || dec.Decision != wire.Deny || dec.Reasons[0].Policy != pdp.ReasonTokenInvalid {
		t.Errorf("without a token: %+v %v", dec, err)
	}
	other := *req
	other.Principal.ID = "deploy-bot"
	dec, err = client.New(d.sock()).WithToken(client.StaticToken(tok)).Authorize(t.Context(), &other)
	if err != nil || dec.Decision != wire.Deny || dec.Reasons[0].Policy != pdp.ReasonPrincipalMismatch {
		t.Errorf("another agent's name with billing-bot's SVID: %+v %v", dec, err)
	}
}
