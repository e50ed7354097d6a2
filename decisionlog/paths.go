package decisionlog

import "github.com/agentpdp/agentpdp/pdp/wire"

// The record's stored paths are declared in pdp/wire (wire.RecordColumns
// and the Field* values). The log's migrations 1-3 made a generated column
// for each of wire.RecordColumns; migration 8 dropped all but
// wire.IndexedColumns, which paths_test.go checks.

// columns are the record fields the log table keeps as generated columns.
var columns = func() map[wire.Field]bool {
	m := make(map[wire.Field]bool, len(wire.IndexedColumns))
	for _, f := range wire.IndexedColumns {
		m[f] = true
	}
	return m
}()

// isColumn reports whether the log table has a generated column for f.
func isColumn(f wire.Field) bool { return columns[f] }

// extract is the SQL that reads f out of a row's body. Paths are wire's
// own constants (member names only), never input, so they are written
// into the statement rather than bound.
func extract(f wire.Field) string { return "json_extract(body, '" + f.Path + "')" }

// fieldSQL is the SQL that reads f in a row of the log: its generated column
// where the table keeps one (so that SQLite can use the column's index),
// its path in the body otherwise. Both hold the same value at every
// schema version since migration 1, so a reader need not know the
// version it reads.
func fieldSQL(f wire.Field) string {
	if isColumn(f) {
		return f.Name
	}
	return extract(f)
}
