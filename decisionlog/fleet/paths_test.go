package fleet_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/decisionlog/fleet"
	"github.com/agentpdp/agentpdp/internal/fieldtest"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// shipped is body as a host's sink ships it, as row seq of origin o.
func shipped(o string, seq int, body []byte) []byte {
	head := fmt.Sprintf(`{"origin":%q,"seq":%d,"kind":"decision","time":"2026-01-02T03:04:05Z","hash":%q,`, o, seq, strings.Repeat("ab", 32))
	return append([]byte(head), body[1:]...)
}

// The fleet's columns hold what the record holds at their paths: each is a
// column of the host's log too, read from the same place.
func TestParseRow_ColumnsAtTheirPaths(t *testing.T) {
	body := fieldtest.Body(1)
	r, err := fleet.ParseRow(shipped("o", 1, body))
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range fleet.RowColumns {
		if !slices.Contains(wire.RecordColumns, f) || len(f.Members()) != 1 {
			t.Errorf("%s (%s): want a top-level field of wire.RecordColumns", f.Name, f.Path)
		}
		v, err := fieldtest.At(body, f)
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := v.(string); r.Columns[i] != want || want == "" {
			t.Errorf("column %s: got %q, want %q", f.Name, r.Columns[i], want)
		}
	}
	if r.Stub {
		t.Error("a whole row read as a stub")
	}
	// A stub's mark, and refusals naming the member.
	if r, err := fleet.ParseRow(shipped("o", 1, []byte(`{"too_large":true,"decision":null}`))); err != nil || !r.Stub || r.Columns[4] != "" {
		t.Errorf("stub: %+v, %v", r, err)
	}
	for _, bad := range []string{`{"principal":5}`, `{"too_large":"yes"}`, `{"decision_id":["d"]}`} {
		if _, err := fleet.ParseRow(shipped("o", 1, []byte(bad))); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

// Every filter fleet query takes finds a row by the value at its field's
// path in PostgreSQL, as log query does in SQLite.
func TestFleetQuery_FieldsFindTheirRows(t *testing.T) {
	dsn := startPG(t)
	h := newHostLog(t, 0)
	l, err := decisionlog.Open(context.Background(), h.path, decisionlog.Options{SigningKey: h.priv, Durability: decisionlog.DurabilityNormal})
	if err != nil {
		t.Fatal(err)
	}
	const n = 3
	for i := range n {
		if err := l.Append(context.Background(), &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: fieldtest.Body(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	tc := startCollector(t, dsn, time.Hour, h)
	rows := h.rows(t)
	if code, res, body := tc.post(t, tc.token+"-0", rows); code != 200 || res.Stored != len(rows) {
		t.Fatalf("ingest: %d %s", code, body)
	}
	fieldtest.Check(t, n, func(f decisionlog.Filter) ([]int64, error) {
		got, err := fleet.Query(context.Background(), tc.Store(), fleet.QueryFilter{Filter: f, Origin: h.origin})
		var out []int64
		for _, r := range got {
			out = append(out, r.Seq)
		}
		return out, err
	})
}
