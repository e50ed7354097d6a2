package decisionlog_test

import (
	"database/sql"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/internal/fieldtest"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// generated matches a generated column of the log table as migrations
// 1-3 write it; stored, a column over the body as migration 9 writes it:
// an ordinary column, its path in a comment. The tests count columns
// apart so that one written otherwise cannot slip past them.
var (
	generated = regexp.MustCompile(`(\w+)\s+(\w+)\s+GENERATED ALWAYS AS \(json_extract\(body, '([^']*)'\)\) VIRTUAL`)
	stored    = regexp.MustCompile(`(\w+)\s+(\w+),?\s*-- json_extract\(body, '([^']*)'\)`)
)

// generatedColumns are the generated columns of db's log table, as its
// DDL declares them (hidden is 2 or 3 for a generated column: virtual or
// stored).
func generatedColumns(t *testing.T, db *sql.DB) []wire.Field {
	t.Helper()
	return ddlColumns(t, db, generated, `hidden IN (2, 3)`, "generated columns")
}

// storedColumns are the ordinary columns of db's log table over the body,
// as its DDL declares them: every ordinary column but seq, kind, time,
// body and hash.
func storedColumns(t *testing.T, db *sql.DB) []wire.Field {
	t.Helper()
	return ddlColumns(t, db, stored, `hidden = 0 AND name NOT IN ('seq', 'kind', 'time', 'body', 'hash')`, "ordinary columns besides seq, kind, time, body and hash")
}

// ddlColumns are the columns re finds in the log table's DDL, which must
// be every column pragma_table_xinfo lists where cond holds (what names
// them in a failure).
func ddlColumns(t *testing.T, db *sql.DB, re *regexp.Regexp, cond, what string) []wire.Field {
	t.Helper()
	var ddl string
	if err := db.QueryRow(`SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'log'`).Scan(&ddl); err != nil {
		t.Fatal(err)
	}
	var got []wire.Field
	for _, m := range re.FindAllStringSubmatch(ddl, -1) {
		got = append(got, wire.Field{Name: m[1], Path: m[3], Type: m[2]})
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM pragma_table_xinfo('log') WHERE ` + cond).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(got) {
		t.Fatalf("the log table has %d %s; %d of them read json_extract(body, path):\n%s", n, what, len(got), ddl)
	}
	return got
}

// sameColumns fails t unless got is want, naming what is missing, extra
// or out of order; what is the list's name.
func sameColumns(t *testing.T, got, want []wire.Field, what string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	for _, f := range want {
		if !slices.Contains(got, f) {
			t.Errorf("%s has %s %s at %s; the log has no such column", what, f.Name, f.Type, f.Path)
		}
	}
	for _, c := range got {
		if !slices.Contains(want, c) {
			t.Errorf("the log has the column %s %s at %s, which %s does not declare", c.Name, c.Type, c.Path, what)
		}
	}
	if !t.Failed() {
		t.Errorf("columns in the order %v, %s in the order %v", got, what, want)
	}
}

// Migrations 1-3 made a generated column for each of wire.RecordColumns
// (name, path and SQL type, in order), and migration 8 kept only
// wire.IndexedColumns: shipped migrations keep their text. Migration 9
// made those ordinary columns, which the writer fills (TableColumns) and
// Verify checks, with the same names, paths and types, and no generated
// column is left. Each is read by an index of the log table: a field added
// to wire.IndexedColumns fails here until a migration adds its column and
// index, and a column no index reads (which the writer would fill for
// nothing) fails too.
func TestSchema_ColumnsAreRecordColumns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.db")
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if err := decisionlog.Migrate(t.Context(), db, 3); err != nil {
		t.Fatal(err)
	}
	sameColumns(t, generatedColumns(t, db), wire.RecordColumns, "wire.RecordColumns")
	if err := decisionlog.Migrate(t.Context(), db, 8); err != nil {
		t.Fatal(err)
	}
	sameColumns(t, generatedColumns(t, db), wire.IndexedColumns, "wire.IndexedColumns")
	db.Close()

	l, err := decisionlog.Open(t.Context(), path, decisionlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	db, err = sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var version int
	if err := db.QueryRow(`PRAGMA user_version`).Scan(&version); err != nil || version != decisionlog.Migrations() {
		t.Fatalf("schema version %d (%v), want %d", version, err, decisionlog.Migrations())
	}
	if got := generatedColumns(t, db); len(got) > 0 {
		t.Errorf("the migrated log keeps the generated columns %v, which SQLite computes on every insert", got)
	}
	got := storedColumns(t, db)
	sameColumns(t, got, wire.IndexedColumns, "wire.IndexedColumns")
	sameColumns(t, decisionlog.TableColumns(), wire.IndexedColumns, "wire.IndexedColumns (as the writer binds them)")
	rows, err := db.Query(`SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'log' AND sql IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	used := map[string][]string{}
	for rows.Next() {
		var name, ddl string
		if err := rows.Scan(&name, &ddl); err != nil {
			t.Fatal(err)
		}
		for _, c := range got {
			if regexp.MustCompile(`\b` + c.Name + `\b`).MatchString(ddl) {
				used[c.Name] = append(used[c.Name], name)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, c := range got {
		if len(used[c.Name]) == 0 {
			t.Errorf("no index of the log reads the column %s: the writer fills it on every insert for nothing; drop it in a migration", c.Name)
		}
	}
}

// The prune record's anchor, which retention reads by path, is a field of
// PruneRecord.
func TestSchema_PruneAnchorInRecord(t *testing.T) {
	if err := decisionlog.PruneAnchor.In(reflect.TypeFor[decisionlog.PruneRecord]()); err != nil {
		t.Fatal(err)
	}
}

// Every filter on a record field finds a row by the value at the field's
// path and only by it: each Filter field is wired to the path that holds
// its value, with the provenance index attached and without it.
func TestFilter_FieldsFindTheirRows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.db")
	l, err := decisionlog.Open(t.Context(), path, decisionlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 3
	for i := range n {
		if err := l.Append(t.Context(), &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: fieldtest.Body(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkFilters(t, path, n)
}

// checkFilters runs fieldtest.Check on the log at path, which holds
// fieldtest.Body(0) … Body(n-1) as seqs 1 … n: with its provenance index,
// then without it (it is removed).
func checkFilters(t *testing.T, path string, n int) {
	t.Helper()
	for _, indexed := range []bool{true, false} {
		if !indexed {
			// Without the provenance index, queries scan.
			for _, p := range []string{"", "-wal", "-shm"} {
				if err := os.Remove(decisionlog.IndexPath(path) + p); err != nil && !errors.Is(err, fs.ErrNotExist) {
					t.Fatal(err)
				}
			}
		}
		r, err := decisionlog.OpenReader(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := r.IndexedThrough(t.Context()); ok != indexed {
			t.Fatalf("reader indexed %v, want %v", ok, indexed)
		}
		t.Run(map[bool]string{true: "Indexed", false: "Scanned"}[indexed], func(t *testing.T) {
			fieldtest.Check(t, n, func(f decisionlog.Filter) ([]int64, error) {
				got, err := r.Query(t.Context(), f)
				var out []int64
				for _, e := range got {
					out = append(out, e.Seq)
				}
				return out, err
			})
		})
		r.Close()
	}
}
