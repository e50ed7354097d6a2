package pdp_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/internal/fieldtest"
	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/mask"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// Production writes step up; a ticket in context is a hard forbid when it
// says "frozen"; mallory is denied.
const auditPolicies = `
@id("agents")
permit (principal, action, resource) unless { principal == Agent::"mallory" };

@id("prod-writes")
@step_up("production change needs approval")
forbid (principal, action, resource == Tool::"k8s.apply");
`

func tool(id string) *wire.Request {
	return &wire.Request{Principal: pdptest.Ref(`Agent::"deploy-bot"`), Action: pdptest.Ref(`Action::"invoke_tool"`), Resource: pdptest.Ref(`Tool::"` + id + `"`),
		Context: json.RawMessage(`{"manifest":"web.yaml"}`)}
}

func record[T any](t *testing.T, log *decisionlog.Log, kind decisionlog.Kind, seq int64) T {
	t.Helper()
	es, err := log.Query(t.Context(), decisionlog.Filter{Kinds: []decisionlog.Kind{kind}, BeforeSeq: seq + 1, Limit: 1})
	if err != nil || len(es) == 0 || es[0].Seq != seq {
		t.Fatalf("no %s at seq %d: %v", kind, seq, err)
	}
	var v T
	if err := json.Unmarshal(es[0].Body, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

type recorded struct {
	Recorded     bool      `json:"recorded"`
	Seq          int64     `json:"seq"`
	ActedAgainst bool      `json:"acted_against_decision"`
	ExpiresAt    time.Time `json:"expires_at"`
}

func TestOutcomes(t *testing.T) {
	d := pdptest.Serve(t, map[string]string{"p.cedar": auditPolicies})
	allowed, err := d.Agent.Authorize(t.Context(), tool("sql.query"))
	if err != nil {
		t.Fatal(err)
	}
	denied, err := d.Agent.Authorize(t.Context(), &wire.Request{Principal: pdptest.Ref(`Agent::"mallory"`), Action: pdptest.Ref(`Action::"x"`), Resource: pdptest.Ref(`Tool::"t"`)})
	if err != nil || denied.Decision != wire.Deny {
		t.Fatal(denied, err)
	}
	var out recorded
	if err := d.Agent.Do(t.Context(), http.MethodPost, "/v1/decisions/"+allowed.DecisionID+"/outcome",
		map[string]any{"status": "success", "detail": map[string]any{"rows": 3}}, &out); err != nil {
		t.Fatal(err)
	}
	if !out.Recorded || out.Seq <= allowed.Seq || out.ActedAgainst {
		t.Errorf("outcome of an allow: %+v", out)
	}
	rec := record[wire.OutcomeRecord](t, d.Log, decisionlog.KindOutcome, out.Seq)
	if rec.DecisionID != allowed.DecisionID || rec.Status != "success" || string(rec.Detail) != `{"rows":3}` || rec.Peer == nil {
		t.Errorf("outcome row: %+v", rec)
	}
	// Acting on a deny is recorded and flagged: the agent ignored its PDP.
	if err := d.Agent.Do(t.Context(), http.MethodPost, "/v1/decisions/"+denied.DecisionID+"/outcome", map[string]any{"status": "error"}, &out); err != nil {
		t.Fatal(err)
	}
	if !out.ActedAgainst || !record[wire.OutcomeRecord](t, d.Log, decisionlog.KindOutcome, out.Seq).ActedAgainst {
		t.Errorf("acting against a deny not flagged: %+v", out)
	}
	out = recorded{}
	if err := d.Agent.Do(t.Context(), http.MethodPost, "/v1/decisions/"+denied.DecisionID+"/outcome", map[string]any{"status": "skipped"}, &out); err != nil || out.ActedAgainst {
		t.Errorf("skipping a denied action flagged: %+v %v", out, err)
	}
	for _, c := range []struct {
		id   string
		body any
		code int
	}{
		{"01a21ace-0000-7000-8000-000000000000", map[string]any{"status": "success"}, http.StatusNotFound},
		{allowed.DecisionID, map[string]any{"status": "done"}, http.StatusBadRequest},
		{allowed.DecisionID, map[string]any{"status": "success", "extra": 1}, http.StatusBadRequest},
		{allowed.DecisionID, map[string]any{"status": "success", "detail": map[string]string{"auth": "Bearer abcdefghijklmnopqrstuvwxyz"}}, http.StatusBadRequest},
	} {
		if err := d.Agent.Do(t.Context(), http.MethodPost, "/v1/decisions/"+c.id+"/outcome", c.body, nil); !client.IsStatus(err, c.code) {
			t.Errorf("%v: got %v, want %d", c.body, err, c.code)
		}
	}
}

func approve(t *testing.T, d *pdptest.Daemon, id string, approved bool) (recorded, error) {
	t.Helper()
	var out recorded
	err := d.Admin.Do(t.Context(), http.MethodPost, "/v1/decisions/"+id+"/approval",
		map[string]any{"approver": "carol@example.com", "approved": approved, "comment": "change CHG-1"}, &out)
	return out, err
}

func withApproval(r *wire.Request, id string) *wire.Request {
	r.Approval = id
	return r
}

func TestApprovals(t *testing.T) {
	d := pdptest.Serve(t, map[string]string{"p.cedar": auditPolicies})
	stepUp := func() *wire.Decision {
		t.Helper()
		dec, err := d.Agent.Authorize(t.Context(), tool("k8s.apply"))
		if err != nil || dec.Decision != wire.StepUp {
			t.Fatalf("want step_up: %v %v", dec, err)
		}
		return dec
	}

	t.Run("ApprovedOnceThenSpent", func(t *testing.T) {
		dec := stepUp()
		// The agent cannot approve itself: the decision socket has no such route.
		if err := d.Agent.Do(t.Context(), http.MethodPost, "/v1/decisions/"+dec.DecisionID+"/approval",
			map[string]any{"approver": "deploy-bot", "approved": true}, nil); !client.IsStatus(err, http.StatusNotFound) {
			t.Fatalf("approval on the decision socket: %v", err)
		}
		out, err := approve(t, d, dec.DecisionID, true)
		if err != nil || !out.Recorded || time.Until(out.ExpiresAt) < 14*time.Minute {
			t.Fatalf("approve: %+v %v", out, err)
		}
		got, err := d.Agent.Authorize(t.Context(), withApproval(tool("k8s.apply"), dec.DecisionID))
		if err != nil {
			t.Fatal(err)
		}
		if got.Decision != wire.Allow || !strings.Contains(toJSON(t, got.Reasons), "approved by carol@example.com") {
			t.Errorf("approved request: %s %s", got.Decision, toJSON(t, got.Reasons))
		}
		rec := pdptest.Record(t, d.Log, got.DecisionID)
		if rec.Approval == nil || rec.Approval.ID != dec.DecisionID || rec.Approval.Approver != "carol@example.com" {
			t.Errorf("decision row does not name the approval: %+v", rec.Approval)
		}
		again, _ := d.Agent.Authorize(t.Context(), withApproval(tool("k8s.apply"), dec.DecisionID))
		wantInvalid(t, again, "already used")
	})
	t.Run("Rejected", func(t *testing.T) {
		dec := stepUp()
		if _, err := approve(t, d, dec.DecisionID, false); err != nil {
			t.Fatal(err)
		}
		got, _ := d.Agent.Authorize(t.Context(), withApproval(tool("k8s.apply"), dec.DecisionID))
		wantInvalid(t, got, "rejection")
	})
	t.Run("Mismatched", func(t *testing.T) {
		dec := stepUp()
		if _, err := approve(t, d, dec.DecisionID, true); err != nil {
			t.Fatal(err)
		}
		other := withApproval(tool("k8s.apply"), dec.DecisionID)
		other.Context = json.RawMessage(`{"manifest":"db.yaml"}`)
		got, _ := d.Agent.Authorize(t.Context(), other)
		wantInvalid(t, got, "another context")
		got, _ = d.Agent.Authorize(t.Context(), withApproval(tool("k8s.delete"), dec.DecisionID))
		wantInvalid(t, got, "not this request")
		// Neither attempt spent it.
		if got, _ := d.Agent.Authorize(t.Context(), withApproval(tool("k8s.apply"), dec.DecisionID)); got.Decision != wire.Allow {
			t.Errorf("the right request after mismatches: %s", got.Decision)
		}
	})
	t.Run("Unknown", func(t *testing.T) {
		got, _ := d.Agent.Authorize(t.Context(), withApproval(tool("k8s.apply"), "01a21ace-0000-7000-8000-000000000000"))
		wantInvalid(t, got, "does not exist")
	})
	t.Run("RefusedForNonStepUpAndTwice", func(t *testing.T) {
		allowed, _ := d.Agent.Authorize(t.Context(), tool("sql.query"))
		if _, err := approve(t, d, allowed.DecisionID, true); !client.IsStatus(err, http.StatusConflict) {
			t.Errorf("approving an allow: %v", err)
		}
		dec := stepUp()
		if _, err := approve(t, d, dec.DecisionID, true); err != nil {
			t.Fatal(err)
		}
		if _, err := approve(t, d, dec.DecisionID, false); !client.IsStatus(err, http.StatusConflict) {
			t.Errorf("second approval: %v", err)
		}
		if _, err := approve(t, d, "01a21ace-0000-7000-8000-000000000000", true); !client.IsStatus(err, http.StatusNotFound) {
			t.Errorf("unknown decision: %v", err)
		}
		if err := d.Admin.Do(t.Context(), http.MethodPost, "/v1/decisions/"+dec.DecisionID+"/approval", map[string]any{"approver": "x"}, nil); !client.IsStatus(err, http.StatusBadRequest) {
			t.Errorf("approval without approved: %v", err)
		}
	})
	t.Run("SingleUseUnderConcurrency", func(t *testing.T) {
		dec := stepUp()
		if _, err := approve(t, d, dec.DecisionID, true); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		allowed := 0
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				got, err := d.Agent.Authorize(t.Context(), withApproval(tool("k8s.apply"), dec.DecisionID))
				if err != nil {
					t.Error(err)
					return
				}
				if got.Decision == wire.Allow {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if allowed != 1 {
			t.Errorf("a single-use approval allowed %d requests", allowed)
		}
	})
	t.Run("HardForbidStillApplies", func(t *testing.T) {
		dec := stepUp()
		if _, err := approve(t, d, dec.DecisionID, true); err != nil {
			t.Fatal(err)
		}
		// Policies change after the approval: a freeze forbids all writes.
		pdptest.WriteFiles(t, filepath.Join(d.Dir, "policies"), map[string]string{"freeze.cedar": `@id("freeze") forbid (principal, action, resource == Tool::"k8s.apply");`})
		if err := d.Admin.Do(t.Context(), http.MethodPost, "/v1/reload", nil, nil); err != nil {
			t.Fatal(err)
		}
		got, _ := d.Agent.Authorize(t.Context(), withApproval(tool("k8s.apply"), dec.DecisionID))
		if got.Decision != wire.Deny || got.Reasons[0].Policy != "freeze" {
			t.Errorf("approval overrode a hard forbid: %s %v", got.Decision, reasonIDs(got.Reasons))
		}
		os.Remove(filepath.Join(d.Dir, "policies", "freeze.cedar"))
		if err := d.Admin.Do(t.Context(), http.MethodPost, "/v1/reload", nil, nil); err != nil {
			t.Fatal(err)
		}
		// The denied attempt did not spend it.
		if got, _ := d.Agent.Authorize(t.Context(), withApproval(tool("k8s.apply"), dec.DecisionID)); got.Decision != wire.Allow {
			t.Errorf("after the freeze: %s", got.Decision)
		}
	})
}

func TestApprovals_ExpireAndSurviveRestart(t *testing.T) {
	d := pdptest.ServeWith(t, map[string]string{"p.cedar": auditPolicies}, decisionlog.DurabilityFull, func(o *pdp.Options) { o.ApprovalTTL = 300 * time.Millisecond })
	first, _ := d.Agent.Authorize(t.Context(), tool("k8s.apply"))
	second, _ := d.Agent.Authorize(t.Context(), tool("k8s.apply"))
	for _, id := range []string{first.DecisionID, second.DecisionID} {
		if _, err := approve(t, d, id, true); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := d.Agent.Authorize(t.Context(), withApproval(tool("k8s.apply"), first.DecisionID)); got.Decision != wire.Allow {
		t.Fatalf("fresh approval: %s", got.Decision)
	}
	// A new engine on the same log knows which approvals are spent.
	e, err := pdp.NewEngine(pdp.Options{Policies: filepath.Join(d.Dir, "policies"), Recorder: d.Log, Log: d.Log, Key: pdptest.TestKey, ApprovalTTL: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pdptest.LoadNow(t.Context(), e, "restart"); err != nil {
		t.Fatal(err)
	}
	if err := e.LoadApprovals(t.Context()); err != nil {
		t.Fatal(err)
	}
	spent, err := e.Decide(t.Context(), withApproval(tool("k8s.apply"), first.DecisionID), nil)
	if err != nil {
		t.Fatal(err)
	}
	wantInvalid(t, spent, "already used")
	time.Sleep(350 * time.Millisecond)
	expired, _ := e.Decide(t.Context(), withApproval(tool("k8s.apply"), second.DecisionID), nil)
	wantInvalid(t, expired, "expired")
}

func wantInvalid(t *testing.T, d *wire.Decision, why string) {
	t.Helper()
	if d == nil || d.Decision != wire.Deny || len(d.Reasons) != 1 || d.Reasons[0].Policy != pdp.ReasonApprovalInvalid || !strings.Contains(d.Reasons[0].Detail, why) {
		t.Errorf("want deny approval_invalid (%s), got %s", why, toJSON(t, d))
	}
}

func TestMasking_NoSecretInTheFile(t *testing.T) {
	secret, ssn := "hunter2-correct-horse", "078-05-1120"
	d := pdptest.ServeWith(t, map[string]string{"p.cedar": `@id("pw") permit (principal, action, resource) when { context.args.password like "hunter2-*-horse" };`},
		decisionlog.DurabilityFull, func(o *pdp.Options) {
			o.Mask = []string{"/context/args/password", "/entities/*/attrs/ssn", "/prompt", "/context/absent"}
			o.Prompt = pdp.PromptStore
		})
	req := &wire.Request{Principal: pdptest.Ref(`Agent::"a"`), Action: pdptest.Ref(`Action::"login"`), Resource: pdptest.Ref(`Tool::"db"`),
		Context:  json.RawMessage(`{"args":{"user":"svc","password":"` + secret + `"}}`),
		Entities: []wire.Entity{{UID: pdptest.Ref(`User::"u"`), Attrs: json.RawMessage(`{"ssn":"` + ssn + `"}`)}},
		Prompt:   "the password is " + secret}
	dec, err := d.Agent.Authorize(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if dec.Decision != wire.Allow {
		t.Errorf("policies must see the real value: %s", dec.Decision)
	}
	rec := pdptest.Record(t, d.Log, dec.DecisionID)
	if strings.Join(rec.Masked, ",") != "/context/args/password,/entities/*/attrs/ssn,/prompt" {
		t.Errorf("masked: %v", rec.Masked)
	}
	if !strings.Contains(string(rec.Request.Context), `"user":"svc"`) || !strings.Contains(string(rec.Request.Context), `"password":"hmac-sha256:`) {
		t.Errorf("masked context: %s", rec.Request.Context)
	}
	d.Stop() // close the log so every byte is in the files
	for _, f := range []string{"d.db", "d.db-wal"} {
		b, _ := os.ReadFile(filepath.Join(d.Dir, f))
		for _, s := range []string{secret, ssn} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds the masked value %q", f, s)
			}
		}
	}
}

func TestProvenance_TokensRefusedAndClassification(t *testing.T) {
	d := pdptest.Serve(t, map[string]string{
		"p.cedar":         `permit (principal, action, resource);`,
		"e.entities.json": `[{"uid":{"type":"Tool","id":"vault"},"attrs":{"classification":"restricted"},"parents":[]}]`,
	})
	jwt := "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJiaWxsaW5nLWJvdCJ9.c2lnbmF0dXJlLWJ5dGVz"
	for _, c := range []struct{ field string }{{"/credential/subject"}, {"/context/headers/authorization"}, {"/on_behalf_of"}} {
		req := &wire.Request{Principal: pdptest.Ref(`Agent::"a"`), Action: pdptest.Ref(`Action::"x"`), Resource: pdptest.Ref(`Tool::"vault"`)}
		switch c.field {
		case "/credential/subject":
			req.Credential = &wire.Credential{ID: "jti-1", Subject: jwt}
		case "/context/headers/authorization":
			req.Context = json.RawMessage(`{"headers":{"authorization":"Bearer ` + jwt + `"}}`)
		case "/on_behalf_of":
			req.OnBehalfOf = jwt
		}
		_, err := d.Agent.Authorize(t.Context(), req)
		if !client.IsStatus(err, http.StatusBadRequest) || !strings.Contains(err.Error(), c.field) || !strings.Contains(err.Error(), "raw token") {
			t.Errorf("%s: got %v, want 400 naming the field", c.field, err)
		}
	}
	fromEntity, _ := d.Agent.Authorize(t.Context(), &wire.Request{Principal: pdptest.Ref(`Agent::"a"`), Action: pdptest.Ref(`Action::"x"`), Resource: pdptest.Ref(`Tool::"vault"`)})
	fromContext, _ := d.Agent.Authorize(t.Context(), &wire.Request{Principal: pdptest.Ref(`Agent::"a"`), Action: pdptest.Ref(`Action::"x"`), Resource: pdptest.Ref(`Tool::"vault"`),
		Context: json.RawMessage(`{"classification":"public"}`)})
	if got := pdptest.Record(t, d.Log, fromEntity.DecisionID).Classification; got != "restricted" {
		t.Errorf("classification from the resource entity: %q", got)
	}
	if got := pdptest.Record(t, d.Log, fromContext.DecisionID).Classification; got != "public" {
		t.Errorf("classification from context: %q", got)
	}
}

// TestProvenanceKeys_FindEveryRow: the keys the engine hands the log's
// provenance index are the ones its rows hold, masked where the row is
// masked, so that once the index has caught up every decision, outcome and
// approval is found by each of its keys through the index alone.
func TestProvenanceKeys_FindEveryRow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.db")
	log, err := decisionlog.Open(t.Context(), path, decisionlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, map[string]string{"p.cedar": `
permit (principal, action, resource) unless { principal == Agent::"careful" };
@step_up("ask") permit (principal == Agent::"careful", action, resource);`},
		pdp.Options{Recorder: log, Log: log, Key: pdptest.TestKey, Mask: []string{"/task_id"}})
	reqs := []string{
		`{` + okRefs + `}`,
		`{` + okRefs + `,"session_id":"s-1","task_id":"secret task","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","tool_call_id":"call_1",
		  "on_behalf_of":"alice@example.com","credential":{"id":"jti-1","issuer":"https://idp"}}`,
		`{"principal":"Agent::\"careful\"","action":"Action::\"read\"","resource":"Doc::\"d\"","session_id":"s-\u00e9","trace_id":"t\"2"}`,
	}
	for _, s := range reqs {
		d, err := e.Decide(t.Context(), mustRequest(t, s), nil)
		if err != nil {
			t.Fatal(err)
		}
		out, _, err := e.Outcome(t.Context(), d.DecisionID, &wire.OutcomeRequest{Status: "success"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		// Outcomes and approvals carry their decision's trace.
		req := mustRequest(t, s)
		if out.TraceID != req.TraceID {
			t.Errorf("outcome trace_id %q, decision's %q", out.TraceID, req.TraceID)
		}
		if d.Decision == wire.StepUp {
			ap, _, err := e.Approve(t.Context(), d.DecisionID, &wire.ApprovalRequest{Approver: "bob", Approved: true}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if ap.TraceID != req.TraceID || ap.TraceID == "" {
				t.Errorf("approval trace_id %q, decision's %q", ap.TraceID, req.TraceID)
			}
		}
	}
	if err := log.Close(t.Context()); err != nil {
		t.Fatal(err)
	}

	r, err := decisionlog.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	st, err := r.Stats(t.Context())
	if err != nil || st.IndexedSeq != st.LastSeq {
		t.Fatalf("index covers seq %d of %d (%v)", st.IndexedSeq, st.LastSeq, err)
	}
	found := 0
	err = r.Scan(t.Context(), 1, func(row *decisionlog.Entry) error {
		for _, field := range decisionlog.IndexedFields() {
			v, err := fieldtest.At(row.Body, field)
			if err != nil {
				return err
			}
			value, _ := v.(string)
			if value == "" {
				continue
			}
			f, ok := fieldtest.Filter(field, value)
			if !ok {
				t.Fatalf("no filter on the indexed field %s", field.Name)
			}
			f.Limit = 1000
			got, err := r.Query(t.Context(), f)
			if err != nil {
				return err
			}
			if !slices.ContainsFunc(got, func(e *decisionlog.Entry) bool { return e.Seq == row.Seq }) {
				t.Errorf("%s row %d is not found by %+v", row.Kind, row.Seq, f)
			}
			found++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The principal of 3 decisions, 3 outcomes and 1 approval, the second
	// request's six other keys (its task id masked, still a key) and the
	// third's session and trace.
	if found != 7+6+2 {
		t.Errorf("checked %d keys, want 15", found)
	}
}

// TestMasking_DerivedFieldsAndErrors (issue 11): a masked value reaches the
// row neither through a Cedar error that quotes it (ip() of a password)
// nor through a field derived from the request (classification), in any
// of the row's bytes.
func TestMasking_DerivedFieldsAndErrors(t *testing.T) {
	secret, level := `hunter2-"correct"-horse`, "top-secret-compartment-7"
	d := pdptest.ServeWith(t, map[string]string{"p.cedar": `
@id("from-ip") forbid (principal, action, resource) when { ip(context.args.password).isLoopback() };
@id("all") permit (principal, action, resource);`},
		decisionlog.DurabilityFull, func(o *pdp.Options) {
			o.Mask = []string{"/context/args/password", "/context/classification"}
		})
	req := &wire.Request{Principal: pdptest.Ref(`Agent::"a"`), Action: pdptest.Ref(`Action::"login"`), Resource: pdptest.Ref(`Tool::"db"`),
		Context: json.RawMessage(`{"args":{"password":` + strconv.Quote(secret) + `},"classification":"` + level + `"}`)}
	dec, err := d.Agent.Authorize(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(dec.Errors) != 1 || dec.Errors[0].Policy != "from-ip" {
		t.Fatalf("want the ip() error of from-ip, got %+v", dec.Errors)
	}
	rec := pdptest.Record(t, d.Log, dec.DecisionID)
	if len(rec.Errors) != 1 || !strings.Contains(rec.Errors[0].Message, "hmac-sha256:") {
		t.Errorf("the error keeps its place with the value's mask instead: %+v", rec.Errors)
	}
	if !strings.HasPrefix(rec.Classification, "hmac-sha256:") {
		t.Errorf("classification is the masked context value's mask: %q", rec.Classification)
	}
	entry, err := d.Log.Decision(t.Context(), dec.DecisionID)
	if err != nil {
		t.Fatal(err)
	}
	d.Stop() // close the log so every byte is in the files
	quoted := strconv.Quote(secret)
	for _, s := range []string{secret, quoted[1 : len(quoted)-1], "hunter2", level} {
		if bytes.Contains(entry.Body, []byte(s)) {
			t.Errorf("the stored row holds the masked value %q: %s", s, entry.Body)
		}
		for _, f := range []string{"d.db", "d.db-wal"} {
			if b, _ := os.ReadFile(filepath.Join(d.Dir, f)); bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds the masked value %q", f, s)
			}
		}
	}
}

// TestMasking_ClassificationFromMaskedEntity: the resource's classification
// from a masked inline entity attribute is stored as its mask (removed:
// none), never as the value.
func TestMasking_ClassificationFromMaskedEntity(t *testing.T) {
	level := "eyes-only-level-9"
	for _, action := range []mask.Action{mask.HMAC, mask.Remove} {
		d := pdptest.ServeWith(t, map[string]string{"p.cedar": `permit (principal, action, resource);`},
			decisionlog.DurabilityFull, func(o *pdp.Options) {
				o.Mask, o.MaskAction = []string{"/entities/*/attrs/classification"}, action
			})
		dec, err := d.Agent.Authorize(t.Context(), &wire.Request{Principal: pdptest.Ref(`Agent::"a"`), Action: pdptest.Ref(`Action::"read"`), Resource: pdptest.Ref(`Doc::"d"`),
			Entities: []wire.Entity{{UID: pdptest.Ref(`Doc::"d"`), Attrs: json.RawMessage(`{"classification":"` + level + `"}`)}}})
		if err != nil {
			t.Fatal(err)
		}
		entry, err := d.Log.Decision(t.Context(), dec.DecisionID)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(entry.Body, []byte(level)) {
			t.Errorf("%s: the stored row holds the masked classification: %s", action, entry.Body)
		}
		got := pdptest.Record(t, d.Log, dec.DecisionID).Classification
		if action == mask.HMAC && !strings.HasPrefix(got, "hmac-sha256:") || action == mask.Remove && got != "" {
			t.Errorf("%s: classification %q", action, got)
		}
	}
}

// The log table's columns are outside the hash chain: one changed behind
// the triggers' back (dropped, the row updated, made again as they were)
// leaves every hash intact, and only log verify's column check sees it.
// An engine restarting on such a log must still know a single-use
// approval is spent: the decision that used it is found by its body, not
// by its approval_id or decision column, so that hiding the row from the
// columns' lookups does not make the approval good again.
func TestApprovals_SpentSurvivesAChangedColumn(t *testing.T) {
	for _, set := range []string{"approval_id = NULL", "approval_id = 'other'", "decision = 'deny'"} {
		t.Run(set, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "d.db")
			log, err := decisionlog.Open(t.Context(), path, decisionlog.Options{})
			if err != nil {
				t.Fatal(err)
			}
			files := map[string]string{"p.cedar": `@step_up("ask") permit (principal, action, resource);`}
			e := newEngine(t, files, pdp.Options{Recorder: log, Log: log, Key: pdptest.TestKey})
			d, err := e.Decide(t.Context(), mustRequest(t, `{`+okRefs+`}`), nil)
			if err != nil || d.Decision != wire.StepUp {
				t.Fatalf("got %+v %v, want step_up", d, err)
			}
			if _, _, err := e.Approve(t.Context(), d.DecisionID, &wire.ApprovalRequest{Approver: "bob", Approved: true}, nil); err != nil {
				t.Fatal(err)
			}
			withApproval := `{` + okRefs + `,"approval":"` + d.DecisionID + `"}`
			used, err := e.Decide(t.Context(), mustRequest(t, withApproval), nil)
			if err != nil || used.Decision != wire.Allow {
				t.Fatalf("first use: %+v %v, want allow", used, err)
			}
			if err := log.Close(t.Context()); err != nil {
				t.Fatal(err)
			}

			pdptest.ChangeLogBehindItsTriggers(t, path, `UPDATE log SET `+set+` WHERE seq = `+strconv.FormatInt(used.Seq, 10))

			log, err = decisionlog.Open(t.Context(), path, decisionlog.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer log.Close(t.Context())
			restarted := newEngine(t, files, pdp.Options{Recorder: log, Log: log, Key: pdptest.TestKey})
			if err := restarted.LoadApprovals(t.Context()); err != nil {
				t.Fatal(err)
			}
			again, err := restarted.Decide(t.Context(), mustRequest(t, withApproval), nil)
			if err != nil {
				t.Fatal(err)
			}
			wantInvalid(t, again, "already used")
		})
	}
}

// A step_up decided once stays decided, however old: an approval row whose
// decision_id column was changed behind the triggers' back (the hash does
// not cover it) must still be found, or a rejected step_up, older than the
// TTL so that the restarted engine's registry no longer holds it, could be
// approved again.
func TestApprovals_DecidedOnceSurvivesAChangedColumn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.db")
	log, err := decisionlog.Open(t.Context(), path, decisionlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"p.cedar": `@step_up("ask") permit (principal, action, resource);`}
	opts := pdp.Options{Recorder: log, Log: log, Key: pdptest.TestKey, ApprovalTTL: time.Millisecond}
	e := newEngine(t, files, opts)
	d, err := e.Decide(t.Context(), mustRequest(t, `{`+okRefs+`}`), nil)
	if err != nil || d.Decision != wire.StepUp {
		t.Fatalf("got %+v %v, want step_up", d, err)
	}
	_, rejected, err := e.Approve(t.Context(), d.DecisionID, &wire.ApprovalRequest{Approver: "bob", Approved: false}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := log.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	pdptest.ChangeLogBehindItsTriggers(t, path, `UPDATE log SET decision_id = NULL WHERE seq = `+strconv.FormatInt(rejected, 10))
	time.Sleep(5 * time.Millisecond) // past the TTL: the registry will not hold the rejection

	log, err = decisionlog.Open(t.Context(), path, decisionlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close(t.Context())
	opts.Recorder, opts.Log = log, log
	restarted := newEngine(t, files, opts)
	if err := restarted.LoadApprovals(t.Context()); err != nil {
		t.Fatal(err)
	}
	if rec, _, err := restarted.Approve(t.Context(), d.DecisionID, &wire.ApprovalRequest{Approver: "mallory", Approved: true}, nil); err == nil {
		t.Errorf("a rejected step_up was approved again: %+v", rec)
	}
}
