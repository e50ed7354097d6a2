package decisionlog

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"github.com/agentpdp/agentpdp/pdp/wire"
)

// The record's stored paths are declared in pdp/wire (wire.RecordColumns
// and the Field* values). The log's migrations 1-3 made a generated column
// for each of wire.RecordColumns; migration 8 dropped all but
// wire.IndexedColumns, and migration 9 made those ordinary columns that
// the writer fills from the entry's Keys (or, without Keys, from the body
// by json_extract) and Verify checks against the body. paths_test.go
// checks all three.

// tableColumns are the log table's columns over the body, in
// wire.IndexedColumns' order, and where Keys has each.
var tableColumns = []struct {
	field wire.Field
	get   func(*Keys) sql.NullString
}{
	{wire.FieldDecisionID, func(k *Keys) sql.NullString { return k.DecisionID }},
	{wire.FieldDecision, func(k *Keys) sql.NullString { return k.Decision }},
	{wire.FieldParentDecisionID, func(k *Keys) sql.NullString { return k.ParentDecisionID }},
	{wire.FieldApprovalID, func(k *Keys) sql.NullString { return k.ApprovalID }},
	{wire.FieldShadowDecision, func(k *Keys) sql.NullString { return k.ShadowDecision }},
}

// TableColumns are the record fields the log table keeps as columns of
// their own, in the order the table has them: wire.IndexedColumns.
func TableColumns() []wire.Field {
	out := make([]wire.Field, len(tableColumns))
	for i, c := range tableColumns {
		out[i] = c.field
	}
	return out
}

// Column is k's value for the log table's column of the record field f,
// and false if the table has no column for f.
func (k *Keys) Column(f wire.Field) (sql.NullString, bool) {
	for _, c := range tableColumns {
		if c.field == f {
			return c.get(k), true
		}
	}
	return sql.NullString{}, false
}

// rechecked are the columns a filter also compares with the body: the ids
// that lookups go by (log show, an approval's decision, its uses, a
// decision's children). The column's index finds the candidates, few
// for an id, and the body the hash covers decides, so that a column
// changed behind the triggers' back can hide a row from a lookup but
// never answer it with another row's content. Verify catches both. The
// decision and the shadow diff, which match many rows, are not rechecked:
// that would parse every row they match.
var rechecked = map[wire.Field]bool{wire.FieldDecisionID: true, wire.FieldParentDecisionID: true, wire.FieldApprovalID: true}

// isColumn reports whether the log table has a column for f.
func isColumn(f wire.Field) bool {
	for _, c := range tableColumns {
		if c.field == f {
			return true
		}
	}
	return false
}

// extract is the SQL that reads f out of a row's body. Paths are wire's
// own constants (member names only), never input, so they are written
// into the statement rather than bound.
func extract(f wire.Field) string { return "json_extract(body, '" + f.Path + "')" }

// fieldSQL is the SQL that reads f in a row of the log: its column where
// the table keeps one (so that SQLite can use the column's index), its
// path in the body otherwise. Both hold the same value at every schema
// version since migration 1 (generated columns until migration 9, then
// columns Verify holds to the body), so a reader need not know the version
// it reads.
func fieldSQL(f wire.Field) string {
	if isColumn(f) {
		return f.Name
	}
	return extract(f)
}

// insertSQL inserts a row with its columns bound: seq, kind, time, body,
// hash, then tableColumns' values.
// insertReadSQL inserts a row whose columns SQLite reads out of the body
// (the fourth parameter), for an entry without Keys: seq, kind, time,
// body, hash.
// insertGeneratedSQL inserts a row into a log table whose columns are
// generated (before migration 9: the tests' old logs).
var insertSQL, insertReadSQL, insertGeneratedSQL = func() (string, string, string) {
	names := []string{"seq", "kind", "time", "body", "hash"}
	params := []string{"?1", "?2", "?3", "?4", "?5"}
	reads := append([]string(nil), params...)
	for i, c := range tableColumns {
		names = append(names, c.field.Name)
		params = append(params, "?"+strconv.Itoa(6+i))
		reads = append(reads, "json_extract(?4, '"+c.field.Path+"')")
	}
	head := "INSERT INTO log(" + strings.Join(names, ", ") + ") VALUES ("
	return head + strings.Join(params, ", ") + ")",
		head + strings.Join(reads, ", ") + ")",
		`INSERT INTO log(seq, kind, time, body, hash) VALUES (?1, ?2, ?3, ?4, ?5)`
}()

// queryRower is what reads one row: a *sql.DB, *sql.Conn or *sql.Tx.
type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// generatedColumns reports whether the log table's columns over the body
// are generated ones, which SQLite computes from the body: a log whose
// schema is before migration 9 (the tests' old logs, or one read without
// being migrated).
func generatedColumns(ctx context.Context, q queryRower) (bool, error) {
	var n int
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_xinfo('log') WHERE hidden IN (2, 3)`).Scan(&n); err != nil {
		return false, fmt.Errorf("read the log's columns: %w", err)
	}
	return n > 0, nil
}
