package decisionlog_test

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// keyed is e with the Keys its writer gives it: the log table's columns,
// read from its body.
func keyed(e *decisionlog.Entry) *decisionlog.Entry {
	e.Keys = columnKeys(e.Body)
	return e
}

// fullDecision is a decision row with a value at every column's path: a
// parent, an approval, and a shadow decision that differs.
func fullDecision(id string) *decisionlog.Entry {
	body := fmt.Sprintf(`{"decision_id":%q,"decision":"allow","principal":"Agent::\"a\"","request":{"parent_decision_id":"d-0","approval":"d-0"},"shadow":{"decision":"deny"}}`, id)
	return &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: json.RawMessage(body)}
}

// columnLog writes d-0 … d-4 (seqs 1-5, given their columns), d-full
// (seq 6, every column set) and closes the log, which signs them.
func columnLog(t *testing.T, priv []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "d.db")
	l := open(t, path, decisionlog.Options{SigningKey: priv})
	for i := range 5 {
		must(t, l.Append(t.Context(), keyed(decision(fmt.Sprintf("d-%d", i), "a", "allow"))))
	}
	must(t, l.Append(t.Context(), keyed(fullDecision("d-full"))))
	must(t, l.Close(t.Context()))
	return path
}

// columnErrorAt reports whether err is a *ChainError at seq naming column.
func columnErrorAt(err error, seq int64, column string) bool {
	var ce *decisionlog.ChainError
	return errors.As(err, &ce) && ce.Seq == seq && strings.Contains(ce.Problem, "column "+column+" ")
}

// The hash covers the body alone, and lookups by decision id, approval and
// shadow diff read the stored columns: a column changed with the triggers
// dropped, the chain and its signatures untouched, fails Verify at the
// first row that differs, naming the column. Changed to another row's
// value, to NULL, from NULL, and two rows at once.
func TestVerify_ColumnChangedFailsNamingIt(t *testing.T) {
	priv, pub := newKey(t)
	for _, c := range []struct {
		name   string
		stmts  []string
		seq    int64
		column string
	}{
		{"decision id of another row", []string{`UPDATE log SET decision_id = 'd-1' WHERE seq = 3`}, 3, "decision_id"},
		{"decision to NULL", []string{`UPDATE log SET decision = NULL WHERE seq = 2`}, 2, "decision"},
		{"decision changed", []string{`UPDATE log SET decision = 'deny' WHERE seq = 6`}, 6, "decision"},
		{"parent where the body has none", []string{`UPDATE log SET parent_decision_id = 'd-0' WHERE seq = 4`}, 4, "parent_decision_id"},
		{"approval changed", []string{`UPDATE log SET approval_id = 'd-1' WHERE seq = 6`}, 6, "approval_id"},
		{"approval to the empty string", []string{`UPDATE log SET approval_id = '' WHERE seq = 5`}, 5, "approval_id"},
		{"shadow decision hidden from the diff", []string{`UPDATE log SET shadow_decision = 'allow' WHERE seq = 6`}, 6, "shadow_decision"},
		{"two rows: the first is named", []string{`UPDATE log SET decision_id = 'x' WHERE seq = 5`, `UPDATE log SET decision = 'x' WHERE seq = 2`}, 2, "decision"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := columnLog(t, priv)
			if _, err := verify(t, path, decisionlog.VerifyOptions{PublicKey: pub}); err != nil {
				t.Fatalf("before tampering: %v", err)
			}
			tamper(t, path, c.stmts...)
			_, err := verify(t, path, decisionlog.VerifyOptions{PublicKey: pub})
			if !columnErrorAt(err, c.seq, c.column) {
				t.Errorf("verify: %v; want a failure at seq %d naming the column %s", err, c.seq, c.column)
			}
		})
	}
}

// A writer's Keys that do not hold what the body does are stored as given
// (the writer does not parse the body: that is what it saves) and fail
// Verify at that row: a wrong value, NULL for a value, "" for NULL, and a
// body that is not JSON at all.
func TestVerify_WrongKeysFromTheWriterFail(t *testing.T) {
	for _, c := range []struct {
		name   string
		entry  *decisionlog.Entry
		column string // "" for a body that is not JSON
	}{
		{"another decision id", func() *decisionlog.Entry {
			e := keyed(decision("d-x", "a", "allow"))
			e.Keys.DecisionID.String = "d-y"
			return e
		}(), "decision_id"},
		{"no columns for a decision", func() *decisionlog.Entry {
			e := decision("d-x", "a", "allow")
			e.Keys = &decisionlog.Keys{}
			return e
		}(), "decision_id"},
		{"an empty string for none", func() *decisionlog.Entry {
			e := keyed(decision("d-x", "a", "allow"))
			e.Keys.ShadowDecision = sql.NullString{Valid: true}
			return e
		}(), "shadow_decision"},
		{"not JSON", &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: json.RawMessage(`{"decision_id": not json`), Keys: &decisionlog.Keys{}}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "d.db")
			l := open(t, path, decisionlog.Options{})
			must(t, l.Append(t.Context(), keyed(decision("d-1", "a", "allow"))))
			must(t, l.Append(t.Context(), c.entry))
			must(t, l.Append(t.Context(), keyed(decision("d-3", "a", "allow"))))
			must(t, l.Close(t.Context()))
			_, err := verify(t, path, decisionlog.VerifyOptions{})
			var ce *decisionlog.ChainError
			switch {
			case c.column != "" && !columnErrorAt(err, 2, c.column):
				t.Errorf("verify: %v; want a failure at seq 2 naming the column %s", err, c.column)
			case c.column == "" && (!errors.As(err, &ce) || ce.Seq != 2 || !strings.Contains(ce.Problem, "not JSON")):
				t.Errorf("verify: %v; want a failure at seq 2 saying the body is not JSON", err)
			}
		})
	}
}

// Every kind of row the log holds has columns that are json_extract of its
// body: decisions with Keys and without (SQLite reads the body), outcomes,
// approvals, policy loads, cosignatures, and those the log writes itself:
// checkpoints, the prune record, integrity rows. The log verifies, and
// every column holds a value in some row.
func TestColumns_EveryKindHoldsItsBody(t *testing.T) {
	priv, pub := newKey(t)
	path := filepath.Join(t.TempDir(), "d.db")
	l := open(t, path, decisionlog.Options{SigningKey: priv, CheckpointEvery: 5})
	for i := range 8 {
		must(t, l.Append(t.Context(), keyed(decision(fmt.Sprintf("d-%d", i), "a", "allow"))))
	}
	must(t, l.Append(t.Context(), keyed(policyLoad("v1"))))
	must(t, l.Append(t.Context(), keyed(fullDecision("d-keyed"))))
	must(t, l.Append(t.Context(), fullDecision("d-unkeyed"))) // no Keys: SQLite reads the body
	must(t, l.Append(t.Context(), keyed(&decisionlog.Entry{Kind: decisionlog.KindOutcome, Time: time.Now(),
		Body: json.RawMessage(`{"decision_id":"d-keyed","status":"success","decision":"allow","principal":"Agent::\"a\""}`)})))
	must(t, l.Append(t.Context(), keyed(&decisionlog.Entry{Kind: decisionlog.KindApproval, Time: time.Now(),
		Body: json.RawMessage(`{"decision_id":"d-keyed","approver":"bob","approved":true,"principal":"Agent::\"a\""}`)})))
	cosig, err := json.Marshal(decisionlog.Cosignature{TreeSize: 5, Checkpoint: "c", Witness: "w"})
	must(t, err)
	must(t, l.Append(t.Context(), &decisionlog.Entry{Kind: decisionlog.KindCosignature, Time: time.Now(), Body: cosig, Keys: &decisionlog.Keys{}}))
	if _, err := l.Prune(t.Context(), 6, "max_rows=10"); err != nil {
		t.Fatal(err)
	}
	must(t, l.Close(t.Context()))
	tamper(t, path) // drops the triggers: the next writer restores them and writes an integrity row
	l = open(t, path, decisionlog.Options{SigningKey: priv, CheckpointEvery: 5})
	must(t, l.Close(t.Context()))

	if _, err := verify(t, path, decisionlog.VerifyOptions{PublicKey: pub}); err != nil {
		t.Fatalf("verify: %v", err)
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	kinds := map[string]int{}
	rows, err := db.Query(`SELECT kind, count(*) FROM log GROUP BY kind`)
	must(t, err)
	for rows.Next() {
		var k string
		var n int
		must(t, rows.Scan(&k, &n))
		kinds[k] = n
	}
	rows.Close()
	for _, k := range decisionlog.Kinds {
		if kinds[string(k)] == 0 {
			t.Errorf("no %s row: the test checks nothing of its columns (%v)", k, kinds)
		}
	}
	columnsHoldBodies(t, db)
}

// columnsHoldBodies fails t unless each of the log table's columns is
// json_extract(body, its path) in every row, and holds a value in some
// (else the check checked nothing of it).
func columnsHoldBodies(t *testing.T, db *sql.DB) {
	t.Helper()
	for _, f := range wire.IndexedColumns {
		var differ, values int
		q := `SELECT count(*) FILTER (WHERE ` + f.Name + ` IS NOT json_extract(body, '` + f.Path + `')), count(` + f.Name + `) FROM log`
		must(t, db.QueryRow(q).Scan(&differ, &values))
		if differ != 0 || values == 0 {
			t.Errorf("column %s: %d rows differ from json_extract(body, '%s'), %d hold a value; want none, and some", f.Name, differ, f.Path, values)
		}
	}
}

// Migration 9 rebuilds the log table and makes its append-only triggers
// again: a trigger missing before it ran is still recorded as restored,
// as it is at any other start.
func TestMigration9_RecordsTriggersMissingBeforeIt(t *testing.T) {
	priv, _ := newKey(t)
	path := filepath.Join(t.TempDir(), "d.db")
	old, err := decisionlog.OpenAtSchema(t.Context(), path, decisionlog.Options{SigningKey: priv}, 8)
	must(t, err)
	must(t, old.Append(t.Context(), decision("d-1", "a", "allow")))
	must(t, old.Close(t.Context()))
	db, err := sql.Open("sqlite3", "file:"+path)
	must(t, err)
	_, err = db.Exec(`DROP TRIGGER log_no_delete`)
	db.Close()
	must(t, err)

	l := open(t, path, decisionlog.Options{SigningKey: priv})
	must(t, l.Close(t.Context()))
	r := openReader(t, path)
	defer r.Close()
	es, err := r.Query(t.Context(), decisionlog.Filter{Kinds: []decisionlog.Kind{decisionlog.KindIntegrity}})
	if err != nil || len(es) != 1 || !strings.Contains(string(es[0].Body), `"triggers":["log_no_delete"]`) {
		t.Fatalf("integrity rows %v (%v): want one recording log_no_delete restored", es, err)
	}
	rep, err := r.Verify(t.Context(), decisionlog.VerifyOptions{})
	if err != nil || len(rep.Unguarded) != 0 {
		t.Errorf("verify: %+v %v", rep, err)
	}
}

// A lookup by an id the log table has a column for (decision, parent,
// approval) finds candidates by the column's index and answers by the
// body the hash covers: a column pointed at another id never answers that
// id with the row's content, and one cleared hides its row (fail closed:
// not found) until Verify names it.
func TestQuery_IdLookupsAnswerByTheBody(t *testing.T) {
	priv, _ := newKey(t)
	path := columnLog(t, priv) // d-0 … d-4 at seqs 1-5, d-full at 6 (parent and approval d-0)
	tamper(t, path,
		`UPDATE log SET decision_id = 'd-4' WHERE seq = 2`, // d-1's row claims d-4
		`UPDATE log SET decision_id = NULL WHERE seq = 5`,  // d-4's own row hidden
		`UPDATE log SET approval_id = 'd-9', parent_decision_id = 'd-9' WHERE seq = 6`,
		`UPDATE log SET approval_id = 'd-0', parent_decision_id = 'd-0' WHERE seq = 3`)
	r := openReader(t, path)
	defer r.Close()
	if e, err := r.Decision(t.Context(), "d-4"); !errors.Is(err, decisionlog.ErrNotFound) {
		t.Errorf("decision d-4: %v (%v); want not found, not d-1's row", e, err)
	}
	if e, err := r.Decision(t.Context(), "d-1"); !errors.Is(err, decisionlog.ErrNotFound) {
		t.Errorf("decision d-1: %v (%v); want not found (its column says d-4)", e, err)
	}
	if e, err := r.Decision(t.Context(), "d-3"); err != nil || e.Seq != 4 {
		t.Errorf("decision d-3, untouched: %v (%v)", e, err)
	}
	for name, f := range map[string]decisionlog.Filter{
		"approval d-0": {ApprovalID: "d-0"}, "approval d-9": {ApprovalID: "d-9"},
		"parent d-0": {ParentDecisionID: "d-0"}, "parent d-9": {ParentDecisionID: "d-9"},
	} {
		if es, err := r.Query(t.Context(), f); err != nil || len(es) != 0 {
			t.Errorf("%s: %d rows (%v); want none: no row holds it in both its column and its body", name, len(es), err)
		}
	}
}
