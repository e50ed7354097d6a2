package pdp_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// A step_up decided once stays decided: after the approval TTL, and after a
// restart that loads only the approvals still usable, approving or
// rejecting it again is 409, so a rejection can never be turned into an
// approval and used.
func TestApprovals_DecidedForGoodWhateverTheirAge(t *testing.T) {
	const ttl = 150 * time.Millisecond
	d := pdptest.ServeWith(t, map[string]string{"p.cedar": auditPolicies}, decisionlog.DurabilityFull, func(o *pdp.Options) { o.ApprovalTTL = ttl })
	rejected, _ := d.Agent.Authorize(t.Context(), tool("k8s.apply"))
	approved, _ := d.Agent.Authorize(t.Context(), tool("k8s.apply"))
	if rejected.Decision != wire.StepUp || approved.Decision != wire.StepUp {
		t.Fatalf("want step_up: %s %s", rejected.Decision, approved.Decision)
	}
	if _, err := approve(t, d, rejected.DecisionID, false); err != nil {
		t.Fatal(err)
	}
	if _, err := approve(t, d, approved.DecisionID, true); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Agent.Authorize(t.Context(), withApproval(tool("k8s.apply"), approved.DecisionID)); got.Decision != wire.Allow {
		t.Fatalf("using the approval: %s", got.Decision)
	}
	time.Sleep(2 * ttl)
	e, err := pdp.NewEngine(pdp.Options{Policies: filepath.Join(d.Dir, "policies"), Recorder: d.Log, Log: d.Log, Key: pdptest.TestKey, ApprovalTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pdptest.LoadNow(t.Context(), e, "restart"); err != nil {
		t.Fatal(err)
	}
	if err := e.LoadApprovals(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, eng := range []*pdp.Engine{d.Engine, e} { // the running engine, and one restarted
		for _, id := range []string{rejected.DecisionID, approved.DecisionID} {
			for _, verdict := range []bool{true, false} {
				_, _, err := eng.Approve(t.Context(), id, &wire.ApprovalRequest{Approver: "mallory", Approved: verdict}, nil)
				var ce *pdp.ConflictError
				if !errors.As(err, &ce) {
					t.Errorf("deciding %s again (approved=%v) after the TTL: %v, want a conflict", id, verdict, err)
				}
			}
		}
		got, err := eng.Decide(t.Context(), withApproval(tool("k8s.apply"), rejected.DecisionID), nil)
		if err != nil || got.Decision == wire.Allow {
			t.Errorf("the rejected step_up allowed: %v %v", got, err)
		}
	}
	// Over the admin socket: 409.
	if _, err := approve(t, d, rejected.DecisionID, true); !client.IsStatus(err, 409) {
		t.Errorf("admin socket: %v, want 409", err)
	}
}

// Only the caller that got a decision may report its outcome; anyone else
// gets 404, as for a decision that does not exist.
func TestOutcomes_OnlyFromTheCallerThatAsked(t *testing.T) {
	d := pdptest.Serve(t, map[string]string{"p.cedar": auditPolicies})
	denied, err := d.Agent.Authorize(t.Context(), &wire.Request{Principal: pdptest.Ref(`Agent::"mallory"`), Action: pdptest.Ref(`Action::"x"`), Resource: pdptest.Ref(`Tool::"t"`)})
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	for name, peer := range map[string]*wire.Peer{
		"another uid":        {UID: uint32(os.Getuid()) + 1, Exe: exe},
		"another executable": {UID: uint32(os.Getuid()), Exe: "/usr/bin/other-agent"},
		"no peer":            nil,
	} {
		_, _, err := d.Engine.Outcome(t.Context(), denied.DecisionID, &wire.OutcomeRequest{Status: "success"}, peer)
		if !errors.Is(err, decisionlog.ErrNotFound) {
			t.Errorf("%s: %v, want not found", name, err)
		}
	}
	// The caller that asked (this process, over the socket) may.
	var out recorded
	if err := d.Agent.Do(t.Context(), "POST", "/v1/decisions/"+denied.DecisionID+"/outcome", map[string]any{"status": "error"}, &out); err != nil || !out.ActedAgainst {
		t.Errorf("the caller that asked: %+v %v", out, err)
	}
}
