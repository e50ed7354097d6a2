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

// The keys the engine gives each entry are what the stored row holds at
// each field's path (json_extract of the body), masked where the row is
// masked: the provenance index's keys ("" where the row has none), and
// the log table's columns, which the log stores as given (NULL where the
// row has none, which is not ""), each equal to its stored column too. For
// every kind of entry the engine writes: the policy loads (live and
// shadow), a decision with every key set, its approval, a decision that
// uses the approval, an outcome, each decision with a shadow decision.
func TestProvenanceKeys_AreTheStoredPaths(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.db")
	log, err := decisionlog.Open(t.Context(), path, decisionlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recording{Log: log}
	shadow := t.TempDir()
	pdptest.WriteFiles(t, shadow, map[string]string{"p.cedar": `forbid (principal, action, resource);`})
	e := newEngine(t, map[string]string{"p.cedar": `@step_up("ask") permit (principal, action, resource);`},
		pdp.Options{Recorder: rec, Log: log, Key: pdptest.TestKey, Mask: []string{"/task_id", "/credential/id"}, Shadow: shadow})
	if _, err := pdptest.LoadShadowNow(t.Context(), e, "test"); err != nil {
		t.Fatal(err)
	}
	req := `{` + okRefs + `,"session_id":"s-1","task_id":"secret task","trace_id":"tr-1",
		"parent_decision_id":"d-0","tool_call_id":"call_1","on_behalf_of":"alice@example.com","credential":{"id":"jti-1","issuer":"https://idp"},
		"context":{"n":1}`
	d, err := e.Decide(t.Context(), mustRequest(t, req+`}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.Decision != wire.StepUp {
		t.Fatalf("decision %s, want step_up", d.Decision)
	}
	if _, _, err := e.Approve(t.Context(), d.DecisionID, &wire.ApprovalRequest{Approver: "bob", Approved: true}, nil); err != nil {
		t.Fatal(err)
	}
	approved, err := e.Decide(t.Context(), mustRequest(t, req+`,"approval":"`+d.DecisionID+`"}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if approved.Decision != wire.Allow {
		t.Fatalf("decision with the approval %s, want allow", approved.Decision)
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
	columnsSet := map[string]int{} // column name: decision rows with a value
	for _, en := range rec.entries {
		if en.Keys == nil {
			t.Errorf("%s row %d has no keys: the indexer reads it back, and SQLite parses its body for its columns", en.Kind, en.Seq)
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
		for _, f := range wire.IndexedColumns {
			given, ok := en.Keys.Column(f)
			if !ok {
				t.Fatalf("Keys has no column %s", f.Name)
			}
			var atPath, stored sql.NullString
			var typ string
			if err := db.QueryRow(`SELECT json_extract(body, ?), typeof(json_extract(body, ?)), `+f.Name+` FROM log WHERE seq = ?`, f.Path, f.Path, en.Seq).Scan(&atPath, &typ, &stored); err != nil {
				t.Fatalf("%s row %d: %v", en.Kind, en.Seq, err)
			}
			if typ != "text" && typ != "null" {
				t.Errorf("%s row %d holds a %s at %s, want text or nothing", en.Kind, en.Seq, typ, f.Path)
			}
			if given != atPath {
				t.Errorf("%s row %d: column %s given as %+v; the row holds %+v at %s", en.Kind, en.Seq, f.Name, given, atPath, f.Path)
			}
			if stored != atPath {
				t.Errorf("%s row %d: column %s stored as %+v; the row holds %+v at %s", en.Kind, en.Seq, f.Name, stored, atPath, f.Path)
			}
			if en.Kind == decisionlog.KindDecision && given.Valid {
				columnsSet[f.Name]++
			}
		}
	}
	for _, f := range wire.IndexedColumns {
		if columnsSet[f.Name] == 0 {
			t.Errorf("no decision row has a value in the column %s: the test checks nothing of it", f.Name)
		}
	}
	want := map[decisionlog.Kind]int{decisionlog.KindPolicyLoad: 2, decisionlog.KindDecision: 2, decisionlog.KindApproval: 1, decisionlog.KindOutcome: 1}
	for k, n := range want {
		if kinds[k] != n {
			t.Errorf("%d %s rows recorded, want %d", kinds[k], k, n)
		}
	}
	r, err := decisionlog.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Verify(t.Context(), decisionlog.VerifyOptions{}); err != nil {
		t.Errorf("verify: %v", err)
	}
}

// policy_load rows are found by the version their record holds where the
// log's policy_version column reads it.
func TestPolicyLoadRecord_PolicyVersionPath(t *testing.T) {
	if err := wire.FieldPolicyVersion.In(reflect.TypeFor[pdp.PolicyLoadRecord]()); err != nil {
		t.Fatal(err)
	}
}
