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

// generated matches a generated column of the log table as the migrations
// write it; the test counts columns apart so that one written otherwise
// cannot slip past it.
var generated = regexp.MustCompile(`(\w+)\s+(\w+)\s+GENERATED ALWAYS AS \(json_extract\(body, '([^']*)'\)\) VIRTUAL`)

// The log's generated columns, as its migrations made them, are exactly
// wire.RecordColumns (name, path and SQL type, in order): shipped
// migrations keep their text, and a field added to the table fails here
// until a migration adds its column.
func TestSchema_GeneratedColumnsAreRecordColumns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.db")
	l, err := decisionlog.Open(t.Context(), path, decisionlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ddl string
	if err := db.QueryRow(`SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'log'`).Scan(&ddl); err != nil {
		t.Fatal(err)
	}
	var got []wire.Field
	for _, m := range generated.FindAllStringSubmatch(ddl, -1) {
		got = append(got, wire.Field{Name: m[1], Path: m[3], Type: m[2]})
	}
	// hidden is 2 or 3 for a generated column (virtual or stored).
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM pragma_table_xinfo('log') WHERE hidden IN (2, 3)`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(got) {
		t.Fatalf("the log table has %d generated columns; %d read json_extract(body, path):\n%s", n, len(got), ddl)
	}
	if !slices.Equal(got, wire.RecordColumns) {
		for _, f := range wire.RecordColumns {
			if !slices.Contains(got, f) {
				t.Errorf("wire.RecordColumns has %s %s at %s; no migration makes that column: append one", f.Name, f.Type, f.Path)
			}
		}
		for _, c := range got {
			if !slices.Contains(wire.RecordColumns, c) {
				t.Errorf("the log has the column %s %s at %s, which wire.RecordColumns does not declare", c.Name, c.Type, c.Path)
			}
		}
		if !t.Failed() {
			t.Errorf("columns in the order %v, wire.RecordColumns in the order %v", got, wire.RecordColumns)
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
