package decisionlog

import "github.com/agentpdp/agentpdp/pdp/wire"

// The record's stored paths are declared in pdp/wire (wire.RecordColumns
// and the Field* values); the log's migrations made a generated column for
// each of wire.RecordColumns, which paths_test.go checks.

// columns are the record fields the log table keeps as generated columns.
var columns = func() map[wire.Field]bool {
	m := make(map[wire.Field]bool, len(wire.RecordColumns))
	for _, f := range wire.RecordColumns {
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
