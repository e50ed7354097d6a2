package pdp_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// decideLogged decides one request with a real log and returns the record
// the log holds for it.
func decideLogged(t *testing.T, e *pdp.Engine, log *decisionlog.Log, body string) (*wire.Decision, wire.DecisionRecord) {
	t.Helper()
	d, err := e.Decide(t.Context(), mustRequest(t, body), nil)
	if err != nil {
		t.Fatal(err)
	}
	return d, pdptest.Record(t, log, d.DecisionID)
}

func openLog(t *testing.T) *decisionlog.Log {
	t.Helper()
	log, err := decisionlog.Open(t.Context(), filepath.Join(t.TempDir(), "decisions.db"), decisionlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close(t.Context()) })
	return log
}

func TestNormalize_ContextAsLoggedAndEvaluated(t *testing.T) {
	log := openLog(t)
	e := newEngine(t, map[string]string{"p.cedar": `
@id("cheap")
permit (principal, action, resource) when { context.price.lessThan(decimal("2.5")) && !(context has gone) };
@id("big")
permit (principal, action, resource) when { context.big == "123456789012345678901234567890" };
@id("precise")
permit (principal, action, resource) when { context.precise == "1.23456" };`}, pdp.Options{Recorder: log, Key: pdptest.TestKey, Prompt: pdp.PromptDrop})

	d, rec := decideLogged(t, e, log, `{`+okRefs+`,"context":{"price":1.25,"gone":null,"n":7,"exp":1e2,
		"big":123456789012345678901234567890,"precise":1.23456,"list":[1,null,2.5],"nested":{"z":null,"a":true}}}`)
	if d.Decision != wire.Allow || reasonIDs(d.Reasons)[0] != "big" {
		t.Fatalf("got %s %v, want allow by big, cheap, precise", d.Decision, reasonIDs(d.Reasons))
	}
	if got := reasonIDs(d.Reasons); strings.Join(got, ",") != "big,cheap,precise" {
		t.Errorf("reasons: got %v", got)
	}
	want := `{"big":"123456789012345678901234567890","exp":100,` +
		`"list":[1,{"__extn":{"fn":"decimal","arg":"2.5"}}],"n":7,"nested":{"a":true},` +
		`"precise":"1.23456","price":{"__extn":{"fn":"decimal","arg":"1.25"}}}`
	if got := string(rec.Request.Context); got != want {
		t.Errorf("logged context:\n got %s\nwant %s", got, want)
	}
}

func TestNormalize_RequestEntityAttrs(t *testing.T) {
	log := openLog(t)
	e := newEngine(t, map[string]string{"p.cedar": `permit (principal, action, resource) when { principal.score.greaterThan(decimal("0.5")) };`},
		pdp.Options{Recorder: log, Key: pdptest.TestKey, Prompt: pdp.PromptDrop, Trust: pdp.TrustOptions{RequestEntities: pdp.RequestEntitiesTrusted}})
	d, rec := decideLogged(t, e, log, `{`+okRefs+`,"entities":[{"uid":{"type":"Agent","id":"a"},"attrs":{"score":0.75,"x":null}}]}`)
	if d.Decision != wire.Allow {
		t.Errorf("got %s, want allow", d.Decision)
	}
	if got := string(rec.Request.Entities[0].Attrs); got != `{"score":{"__extn":{"fn":"decimal","arg":"0.75"}}}` {
		t.Errorf("logged attrs: %s", got)
	}
}

func TestDecide_RecordHoldsTheAuditFields(t *testing.T) {
	log := openLog(t)
	key := []byte("0123456789abcdef0123456789abcdef")
	e := newEngine(t, map[string]string{"p.cedar": `permit (principal, action, resource);`},
		pdp.Options{Recorder: log, Key: key})
	peer := &wire.Peer{PID: 42, UID: 1000, GID: 1000, Exe: "/usr/bin/agent"}
	d, err := e.Decide(t.Context(), mustRequest(t, `{`+okRefs+`,"session_id":"s-42","task_id":"t-7",
		"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","parent_decision_id":"p-1","tool_call_id":"call_abc",
		"on_behalf_of":"alice@example.com","prompt":"summarise last month's invoices",
		"credential":{"id":"jti-123","issuer":"https://idp","subject":"billing-bot","scopes":["invoices:read"],"expires_at":"2099-01-01T00:00:00Z"}}`), peer)
	if err != nil {
		t.Fatal(err)
	}
	if d.Seq == 0 || d.DecisionID == "" {
		t.Fatalf("decision not placed in the log: %+v", d)
	}
	entry, err := log.Decision(t.Context(), d.DecisionID)
	if err != nil {
		t.Fatal(err)
	}
	if entry.Seq != d.Seq {
		t.Errorf("seq: answered %d, logged %d", d.Seq, entry.Seq)
	}
	var rec wire.DecisionRecord
	if err := json.Unmarshal(entry.Body, &rec); err != nil {
		t.Fatal(err)
	}
	r := rec.Request
	got := []string{string(rec.Decision), rec.Principal, rec.PolicyVersion, r.SessionID, r.TaskID, r.TraceID, r.ParentDecisionID,
		r.ToolCallID, r.OnBehalfOf, r.Credential.ID, r.Credential.Issuer, r.Credential.Subject, r.Credential.Scopes[0]}
	want := []string{"allow", `Agent::"a"`, d.PolicyVersion, "s-42", "t-7", "4bf92f3577b34da6a3ce929d0e0e4736", "p-1",
		"call_abc", "alice@example.com", "jti-123", "https://idp", "billing-bot", "invoices:read"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("record:\n got %v\nwant %v", got, want)
	}
	if rec.Peer == nil || *rec.Peer != *peer {
		t.Errorf("peer: got %+v, want %+v", rec.Peer, peer)
	}
	if !strings.HasPrefix(r.Prompt, "hmac-sha256:") || strings.Contains(string(entry.Body), "invoices\"") {
		t.Errorf("prompt stored in the clear: %q", r.Prompt)
	}
	if rec.EvalNanos <= 0 {
		t.Errorf("eval_ns: %d", rec.EvalNanos)
	}
}

// The logged context is canonical JSON: sorted keys, no space, and strings
// escaped only where JSON requires it, as the JSON library writes them.
func TestNormalize_StringsAsTheLibraryWritesThem(t *testing.T) {
	log := openLog(t)
	e := newEngine(t, map[string]string{"p.cedar": `permit (principal, action, resource);`}, pdp.Options{Recorder: log, Key: pdptest.TestKey, Prompt: pdp.PromptDrop})
	strs := []string{"plain", `q"uote`, `back\slash`, "<html>&", "tab\there", "é ü 😀", "\u2028", ""}
	ctx := map[string]string{}
	for i, s := range strs {
		ctx[fmt.Sprintf("k%d", i)] = s
	}
	_, rec := decideLogged(t, e, log, `{`+okRefs+`,"context":`+toJSON(t, ctx)+`}`)
	want, err := jsonv2.Marshal(ctx, jsonv2.Deterministic(true))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(rec.Request.Context); got != string(want) {
		t.Errorf("logged context differs from the library's:\n got %s\nwant %s", got, want)
	}
}

// Issue 11: -922337203685477.5808, the smallest Cedar decimal, became a
// string, so a policy comparing it as a decimal errored.
func TestNormalize_SmallestDecimalDecides(t *testing.T) {
	e := newEngine(t, map[string]string{"p.cedar": `permit (principal, action, resource) when { context.n == decimal("-922337203685477.5808") && context.m == decimal("922337203685477.5807") };`}, pdp.Options{})
	d, err := e.Evaluate(mustRequest(t, `{`+okRefs+`,"context":{"n":-922337203685477.5808,"m":922337203685477.5807}}`))
	if err != nil {
		t.Fatal(err)
	}
	if d.Decision != wire.Allow || len(d.Errors) > 0 {
		t.Errorf("got %s %+v, want allow without errors", d.Decision, d.Errors)
	}
}

// An agent that writes the port as 22.0 or 2.2e1 asks for port 22: the
// tool reads the same number. As a decimal it slipped past the forbid.
func TestNormalize_IntegralNumberIsTheLongAForbidNames(t *testing.T) {
	log := openLog(t)
	e := newEngine(t, map[string]string{"p.cedar": `
@id("all")
permit (principal, action, resource);
@id("no-ssh")
forbid (principal, action, resource) when { context.port == 22 || [22, 2222].contains(context.alt) };`},
		pdp.Options{Recorder: log, Key: pdptest.TestKey, Prompt: pdp.PromptDrop})
	for _, ctx := range []string{`{"port":22,"alt":1}`, `{"port":22.0,"alt":1}`, `{"port":2.2e1,"alt":1}`, `{"port":1,"alt":2222.00}`, `{"port":1,"alt":22e0}`} {
		d, rec := decideLogged(t, e, log, `{`+okRefs+`,"context":`+ctx+`}`)
		if d.Decision != wire.Deny {
			t.Errorf("%s: got %s %v, want deny by no-ssh", ctx, d.Decision, reasonIDs(d.Reasons))
		}
		if got := string(rec.Request.Context); strings.Contains(got, "__extn") {
			t.Errorf("%s: logged %s, want Longs", ctx, got)
		}
	}
}
