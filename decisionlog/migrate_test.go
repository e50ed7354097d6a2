package decisionlog_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/internal/fieldtest"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// storedRow is a row of the log table as stored.
type storedRow struct {
	Seq        int64
	Kind       string
	Time       int64
	Body, Hash string
}

func storedRows(t *testing.T, path string) (rows []storedRow, version int) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow(`PRAGMA user_version`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	rs, err := db.Query(`SELECT seq, kind, time, body, hex(hash) FROM log ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	for rs.Next() {
		var r storedRow
		if err := rs.Scan(&r.Seq, &r.Kind, &r.Time, &r.Body, &r.Hash); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, r)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return rows, version
}

// schemaObjects are the log table's indexes and triggers, by name, with
// their DDL's whitespace collapsed.
func schemaObjects(t *testing.T, db *sql.DB) map[string]string {
	t.Helper()
	rows, err := db.Query(`SELECT name, sql FROM sqlite_schema WHERE type IN ('index', 'trigger') AND tbl_name = 'log' AND sql IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, ddl string
		if err := rows.Scan(&name, &ddl); err != nil {
			t.Fatal(err)
		}
		out[name] = strings.Join(strings.Fields(ddl), " ")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Migrations 8 and 9 bring a log an older agentpdp wrote (schema 7, with
// rows and signed checkpoints) up to date: 8 drops the generated columns
// no index reads, 9 rebuilds the table with the five left as ordinary
// columns. Every row keeps its seq, kind, time, body and hash, byte for
// byte; each column of every row is json_extract of its body at the
// column's path (a value, "", NULL, a number as text); the table has the
// same indexes and triggers as before; the log verifies, signatures, tail
// state and columns; and every log query filter, summary and policy-load
// lookup still finds its rows.
func TestMigrations8And9_KeepRowsAndVerify(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "d.db")
	priv, pub := newKey(t)
	opts := decisionlog.Options{SigningKey: priv} // a signed checkpoint at each Close
	old, err := decisionlog.OpenAtSchema(ctx, path, opts, 7)
	if err != nil {
		t.Fatal(err)
	}
	const n = 3
	for i := range n {
		if err := old.Append(ctx, &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: fieldtest.Body(i)}); err != nil {
			t.Fatal(err)
		}
	}
	load := json.RawMessage(`{"policy_version":"sha256:v1","files":{"p.cedar":"permit (principal, action, resource);"}}`)
	if err := old.Append(ctx, &decisionlog.Entry{Kind: decisionlog.KindPolicyLoad, Time: time.Now(), Body: load}); err != nil {
		t.Fatal(err)
	}
	// An odd row: "" where a column's path is, a number, nothing else.
	odd := json.RawMessage(`{"decision_id":"","decision":5,"status":"odd","request":{"approval":""}}`)
	if err := old.Append(ctx, &decisionlog.Entry{Kind: decisionlog.KindOutcome, Time: time.Now(), Body: odd}); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(ctx); err != nil {
		t.Fatal(err)
	}
	before, version := storedRows(t, path)
	if version != 7 {
		t.Fatalf("old log at schema %d, want 7", version)
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	if got := generatedColumns(t, db); !slices.Equal(got, wire.RecordColumns) {
		t.Fatalf("the schema-7 log has the columns %v, want every one of wire.RecordColumns", got)
	}
	objects := schemaObjects(t, db)
	db.Close()
	if len(objects) != 9 { // 7 indexes, 2 triggers
		t.Fatalf("the schema-7 log has the indexes and triggers %v", objects)
	}

	l, err := decisionlog.Open(ctx, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(ctx, &decisionlog.Entry{Kind: decisionlog.KindOutcome, Time: time.Now(), Body: json.RawMessage(`{"decision_id":"d-after-migration","status":"succeeded"}`)}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	after, version := storedRows(t, path)
	if version != decisionlog.Migrations() {
		t.Fatalf("migrated log at schema %d, want %d", version, decisionlog.Migrations())
	}
	if len(after) <= len(before) || !slices.Equal(after[:len(before)], before) {
		t.Fatalf("rows changed by the migration:\nbefore %v\nafter  %v", before, after[:min(len(before), len(after))])
	}
	db, err = sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	if got := generatedColumns(t, db); len(got) > 0 {
		t.Errorf("the migrated log keeps the generated columns %v", got)
	}
	sameColumns(t, storedColumns(t, db), wire.IndexedColumns, "wire.IndexedColumns")
	if got := schemaObjects(t, db); !maps.Equal(got, objects) {
		t.Errorf("the migrated log's indexes and triggers:\n%v\nwant, as before:\n%v", got, objects)
	}
	columnsHoldBodies(t, db)
	var decision, decisionType, decisionID, approvalID sql.NullString
	if err := db.QueryRow(`SELECT decision, typeof(decision), decision_id, approval_id FROM log WHERE seq = ?`, n+2).Scan(&decision, &decisionType, &decisionID, &approvalID); err != nil {
		t.Fatal(err)
	}
	if decision.String != "5" || decisionType.String != "text" || decisionID != (sql.NullString{Valid: true}) || approvalID != (sql.NullString{Valid: true}) {
		t.Errorf("the odd row's columns: decision %v (%s), decision_id %+v, approval_id %+v; want the text 5, and \"\" (not NULL) twice", decision, decisionType.String, decisionID, approvalID)
	}
	db.Close()

	r, err := decisionlog.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Verify(ctx, decisionlog.VerifyOptions{PublicKey: pub, StatePath: decisionlog.StatePath(path), StateKey: priv})
	if err != nil {
		t.Fatalf("verify the migrated log: %v", err)
	}
	if rep.LastSeq != after[len(after)-1].Seq || len(rep.Unguarded) > 0 || rep.TailState != "authenticated" || rep.Unsigned != 0 || rep.Checkpoints != 2 {
		t.Errorf("verify report %+v: want every row checked and under one of the two signed checkpoints, the triggers in place, the tail state authenticated", rep)
	}
	e, err := r.PolicyLoad(ctx, "sha256:v1")
	if err != nil || e.Seq != n+1 {
		t.Errorf("policy load of sha256:v1: %v (%v), want seq %d", e, err, n+1)
	}
	top, err := r.Top(ctx, "principal", "", time.Time{}, 10)
	if err != nil || len(top) != n {
		t.Errorf("top principals %v (%v), want %d of them", top, err, n)
	}
	sum, err := r.Summarize(ctx, time.Time{}, time.Time{})
	if err != nil || sum.Decisions != n || len(sum.ByPrincipal) != n || len(sum.ByAction) != n || sum.Outcomes["succeeded"] != 1 {
		t.Errorf("summary %+v (%v): want %d decisions of %[3]d principals and actions, one outcome", sum, err, n)
	}
	for i := range n {
		want := fmt.Sprintf(`T::"principal-%d"`, i)
		if !slices.ContainsFunc(top, func(c decisionlog.Count) bool { return c.Key == want && c.Count == 1 }) {
			t.Errorf("top principals %v: want %s once", top, want)
		}
	}
	r.Close()
	checkFilters(t, path, n)
}
