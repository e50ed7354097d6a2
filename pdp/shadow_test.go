package pdp_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp"
)

func TestShadow_RecordedNeverAnswered(t *testing.T) {
	var shadowDir string
	d := serveWith(t, map[string]string{"p.cedar": `@id("open") permit (principal, action, resource);`}, decisionlog.DurabilityFull, func(o *pdp.Options) {
		shadowDir = filepath.Join(filepath.Dir(o.Policies), "shadow")
		writeFiles(t, shadowDir, map[string]string{"p.cedar": `@id("open") permit (principal, action, resource);
@id("freeze-x") forbid (principal, action, resource == Tool::"x");`})
		o.Shadow = shadowDir
	})
	if _, err := loadShadowNow(t.Context(), d.engine, "startup"); err != nil {
		t.Fatal(err)
	}
	onX, err := d.agent.Authorize(t.Context(), &pdp.Request{Principal: ref(`Agent::"a"`), Action: ref(`Action::"go"`), Resource: ref(`Tool::"x"`)})
	if err != nil {
		t.Fatal(err)
	}
	if onX.Decision != pdp.Allow || strings.Contains(toJSON(t, onX), "freeze-x") {
		t.Fatalf("the shadow leaked into the answer: %s", toJSON(t, onX))
	}
	onY, _ := d.agent.Authorize(t.Context(), &pdp.Request{Principal: ref(`Agent::"a"`), Action: ref(`Action::"go"`), Resource: ref(`Tool::"y"`)})
	rec := recordOf(t, d.log, onX.DecisionID)
	if rec.Shadow == nil || rec.Shadow.Decision != pdp.Deny || rec.Shadow.Reasons[0].Policy != "freeze-x" || rec.Shadow.PolicyVersion != d.engine.ShadowSnapshot().Version {
		t.Errorf("shadow in the row: %+v", rec.Shadow)
	}
	diff, err := d.log.Query(t.Context(), decisionlog.Filter{ShadowDiff: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(diff) != 1 || !strings.Contains(string(diff[0].Body), onX.DecisionID) {
		t.Errorf("shadow diff: want only %s, got %d rows (y was %s)", onX.DecisionID, len(diff), onY.DecisionID)
	}
	// A change to the shadow directory is reloaded and logged as a shadow load.
	writeFiles(t, shadowDir, map[string]string{"p.cedar": `@id("open") permit (principal, action, resource);`})
	before := d.engine.ShadowSnapshot().Version
	if changed, err := loadShadowNow(t.Context(), d.engine, "test"); err != nil || !changed {
		t.Fatalf("shadow reload: %v %v", changed, err)
	}
	entry, err := d.log.PolicyLoad(t.Context(), d.engine.ShadowSnapshot().Version)
	if err != nil {
		t.Fatal(err)
	}
	var load pdp.PolicyLoadRecord
	json.Unmarshal(entry.Body, &load)
	if !load.Shadow || load.PreviousVersion != before {
		t.Errorf("shadow load row: %+v", load)
	}
	if d.engine.Snapshot().Version == d.engine.ShadowSnapshot().Version {
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
@id("enforced") @mode("enforce") forbid (principal, action, resource) when { context has hard };`}, pdp.Options{Recorder: log, Key: testKey})
	d, rec := decideLogged(t, e, log, `{`+okRefs+`,"context":{"freeze":true}}`)
	if d.Decision != pdp.Allow {
		t.Errorf("a log-only forbid decided (erroring or not): %s %v", d.Decision, reasonIDs(d.Reasons))
	}
	if got := reasonIDs(rec.LogOnly); strings.Join(got, ",") != "trial-freeze,trial-permit" {
		t.Errorf("log_only in the row: %v", got)
	}
	if got := errorIDs(d.Errors); strings.Join(got, ",") != "trial-broken" {
		t.Errorf("the log-only policy's error is recorded: %v", got)
	}
	if d, _ := decideLogged(t, e, log, `{`+okRefs+`,"context":{"hard":true}}`); d.Decision != pdp.Deny {
		t.Errorf("@mode(enforce) does not enforce: %s", d.Decision)
	}
	le := loadErr(t, map[string]string{"p.cedar": `@mode("dry-run") permit (principal, action, resource);`})
	if !strings.Contains(le.Error(), `@mode("dry-run")`) {
		t.Errorf("unknown mode: %v", le)
	}
}
