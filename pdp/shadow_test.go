package pdp_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

func TestShadow_RecordedNeverAnswered(t *testing.T) {
	var shadowDir string
	d := pdptest.ServeWith(t, map[string]string{"p.cedar": `@id("open") permit (principal, action, resource);`}, decisionlog.DurabilityFull, func(o *pdp.Options) {
		shadowDir = filepath.Join(filepath.Dir(o.Policies), "shadow")
		pdptest.WriteFiles(t, shadowDir, map[string]string{"p.cedar": `@id("open") permit (principal, action, resource);
@id("freeze-x") forbid (principal, action, resource == Tool::"x");`})
		o.Shadow = shadowDir
	})
	if _, err := pdptest.LoadShadowNow(t.Context(), d.Engine, "startup"); err != nil {
		t.Fatal(err)
	}
	onX, err := d.Agent.Authorize(t.Context(), &wire.Request{Principal: pdptest.Ref(`Agent::"a"`), Action: pdptest.Ref(`Action::"go"`), Resource: pdptest.Ref(`Tool::"x"`)})
	if err != nil {
		t.Fatal(err)
	}
	if onX.Decision != wire.Allow || strings.Contains(toJSON(t, onX), "freeze-x") {
		t.Fatalf("the shadow leaked into the answer: %s", toJSON(t, onX))
	}
	onY, _ := d.Agent.Authorize(t.Context(), &wire.Request{Principal: pdptest.Ref(`Agent::"a"`), Action: pdptest.Ref(`Action::"go"`), Resource: pdptest.Ref(`Tool::"y"`)})
	rec := pdptest.Record(t, d.Log, onX.DecisionID)
	if rec.Shadow == nil || rec.Shadow.Decision != wire.Deny || rec.Shadow.Reasons[0].Policy != "freeze-x" || rec.Shadow.PolicyVersion != d.Engine.ShadowSnapshot().Version {
		t.Errorf("shadow in the row: %+v", rec.Shadow)
	}
	diff, err := d.Log.Query(t.Context(), decisionlog.Filter{ShadowDiff: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(diff) != 1 || !strings.Contains(string(diff[0].Body), onX.DecisionID) {
		t.Errorf("shadow diff: want only %s, got %d rows (y was %s)", onX.DecisionID, len(diff), onY.DecisionID)
	}
	// A change to the shadow directory is reloaded and logged as a shadow load.
	pdptest.WriteFiles(t, shadowDir, map[string]string{"p.cedar": `@id("open") permit (principal, action, resource);`})
	before := d.Engine.ShadowSnapshot().Version
	if changed, err := pdptest.LoadShadowNow(t.Context(), d.Engine, "test"); err != nil || !changed {
		t.Fatalf("shadow reload: %v %v", changed, err)
	}
	entry, err := d.Log.PolicyLoad(t.Context(), d.Engine.ShadowSnapshot().Version)
	if err != nil {
		t.Fatal(err)
	}
	var load pdp.PolicyLoadRecord
	json.Unmarshal(entry.Body, &load)
	if !load.Shadow || load.PreviousVersion != before {
		t.Errorf("shadow load row: %+v", load)
	}
	if d.Engine.Snapshot().Version == d.Engine.ShadowSnapshot().Version {
		t.Error("the live snapshot changed with the shadow")
	}
}

func TestLogOnly_RecordedWithoutEffect(t *testing.T) {
	log := openLog(t)
	e := newEngine(t, map[string]string{"p.cedar": `
@id("open") permit (principal, action, resource);
@id("trial-freeze") @mode("log_only") forbid (principal, action, resource) when { context has freeze };
@id("trial-broken") @mode("log_only") forbid (principal, action, resource) when { context.missing };
@id("trial-permit") @mode("log_only") permit (principal, action, resource);
@id("enforced") @mode("enforce") forbid (principal, action, resource) when { context has hard };`}, pdp.Options{Recorder: log, Key: pdptest.TestKey})
	d, rec := decideLogged(t, e, log, `{`+okRefs+`,"context":{"freeze":true}}`)
	if d.Decision != wire.Allow {
		t.Errorf("a log-only forbid decided (erroring or not): %s %v", d.Decision, reasonIDs(d.Reasons))
	}
	if got := reasonIDs(rec.LogOnly); strings.Join(got, ",") != "trial-freeze,trial-permit" {
		t.Errorf("log_only in the row: %v", got)
	}
	if got := errorIDs(d.Errors); strings.Join(got, ",") != "trial-broken" {
		t.Errorf("the log-only policy's error is recorded: %v", got)
	}
	if d, _ := decideLogged(t, e, log, `{`+okRefs+`,"context":{"hard":true}}`); d.Decision != wire.Deny {
		t.Errorf("@mode(enforce) does not enforce: %s", d.Decision)
	}
}
