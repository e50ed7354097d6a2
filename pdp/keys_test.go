package pdp_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"reflect"
	"sync"
	"testing"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// recording is the real log; it also keeps the entries the engine appends,
// for the Keys they carry, which the log hands its index and never stores.
type recording struct {
	*decisionlog.Log
	mu      sync.Mutex
	entries []*decisionlog.Entry
}

func (r *recording) Append(ctx context.Context, es ...*decisionlog.Entry) error {
	err := r.Log.Append(ctx, es...)
	r.mu.Lock()
	r.entries = append(r.entries, es...)
	r.mu.Unlock()
	return err
}

// The provenance keys the engine gives each entry are what the stored row
// holds at each indexed field's path (json_extract of the body, and the
// generated column), masked where the row is masked: for a decision with
// every key set, its approval and its outcome, and the policy load.
func TestProvenanceKeys_AreTheStoredPaths(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.db")
	log, err := decisionlog.Open(t.Context(), path, decisionlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recording{Log: log}
	e := newEngine(t, map[string]string{"p.cedar": `@step_up("ask") permit (principal, action, resource);`},
		pdp.Options{Recorder: rec, Log: log, Key: pdptest.TestKey, Mask: []string{"/task_id", "/credential/id"}})
	d, err := e.Decide(t.Context(), mustRequest(t, `{`+okRefs+`,"session_id":"s-1","task_id":"secret task","trace_id":"tr-1",
		"parent_decision_id":"d-0","tool_call_id":"call_1","on_behalf_of":"alice@example.com","credential":{"id":"jti-1","issuer":"https://idp"},
		"context":{"n":1}}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.Decision != wire.StepUp {
		t.Fatalf("decision %s, want step_up", d.Decision)
	}
	if _, _, err := e.Approve(t.Context(), d.DecisionID, &wire.ApprovalRequest{Approver: "bob", Approved: true}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Outcome(t.Context(), d.DecisionID, &wire.OutcomeRequest{Status: wire.OutcomeSuccess}, nil); err != nil {
		t.Fatal(err)
	}
	if err := log.Close(t.Context()); err != nil {
		t.Fatal(err)
	}

	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	kinds := map[decisionlog.Kind]int{}
	for _, en := range rec.entries {
		if en.Keys == nil {
			t.Errorf("%s row %d has no keys: the indexer reads it back", en.Kind, en.Seq)
			continue
		}
		kinds[en.Kind]++
		set := 0
		for _, f := range decisionlog.IndexedFields() {
			key, _ := en.Keys.Get(f)
			var atPath sql.NullString
			if err := db.QueryRow(`SELECT json_extract(body, ?) FROM log WHERE seq = ?`, f.Path, en.Seq).Scan(&atPath); err != nil {
				t.Fatalf("%s row %d: %v", en.Kind, en.Seq, err)
			}
			if key != atPath.String {
				t.Errorf("%s row %d: key %s is %q; the row holds %q at %s", en.Kind, en.Seq, f.Name, key, atPath.String, f.Path)
			}
			if key != "" {
				set++
			}
		}
		if n := len(decisionlog.IndexedFields()); en.Kind == decisionlog.KindDecision && set != n {
			t.Errorf("decision row %d has %d of the %d keys set", en.Seq, set, n)
		}
	}
	for _, k := range []decisionlog.Kind{decisionlog.KindPolicyLoad, decisionlog.KindDecision, decisionlog.KindApproval, decisionlog.KindOutcome} {
		if kinds[k] != 1 {
			t.Errorf("%d %s rows recorded, want 1", kinds[k], k)
		}
	}
}

// policy_load rows are found by the version their record holds where the
// log's policy_version column reads it.
func TestPolicyLoadRecord_PolicyVersionPath(t *testing.T) {
	if err := wire.FieldPolicyVersion.In(reflect.TypeFor[pdp.PolicyLoadRecord]()); err != nil {
		t.Fatal(err)
	}
}
