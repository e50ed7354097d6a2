package decisionlog_test

import (
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
)

func TestReader_TimelineAndTop(t *testing.T) {
	path := t.TempDir() + "/d.db"
	l := open(t, path, decisionlog.Options{})
	base := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	at := func(e *decisionlog.Entry, d time.Duration) *decisionlog.Entry { e.Time = base.Add(d); return e }
	if err := l.Append(t.Context(),
		at(decision("d-1", "a", "allow"), 5*time.Minute),
		at(decision("d-2", "b", "deny"), 10*time.Minute),
		at(decision("d-3", "b", "deny"), 70*time.Minute),
		at(decision("d-4", "c", "deny"), 75*time.Minute),
		at(decision("d-5", "c", "step_up"), 190*time.Minute), // outside the range below
	); err != nil {
		t.Fatal(err)
	}
	r, err := decisionlog.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	tl, err := r.Timeline(t.Context(), base, base.Add(3*time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(tl) != 3 {
		t.Fatalf("got %d buckets, want 3", len(tl))
	}
	want := []map[string]int64{{"allow": 1, "deny": 1}, {"deny": 2}, {}}
	for i, b := range tl {
		if !b.Start.Equal(base.Add(time.Duration(i) * time.Hour)) {
			t.Errorf("bucket %d starts %s", i, b.Start)
		}
		if len(b.Counts) != len(want[i]) {
			t.Errorf("bucket %d: got %v, want %v", i, b.Counts, want[i])
		}
		for k, n := range want[i] {
			if b.Counts[k] != n {
				t.Errorf("bucket %d: got %v, want %v", i, b.Counts, want[i])
			}
		}
	}

	top, err := r.Top(t.Context(), "principal", "deny", base, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(top) != 2 || top[0].Key != `Agent::"b"` || top[0].Count != 2 || top[1].Key != `Agent::"c"` || top[1].Count != 1 {
		t.Errorf("top denied principals: %+v", top)
	}
	if _, err := r.Top(t.Context(), "body; drop table log", "", base, 1); err == nil {
		t.Error("Top accepted a column that is not principal, action or resource")
	}
	if _, err := r.Timeline(t.Context(), base, base, time.Hour); err == nil {
		t.Error("Timeline accepted an empty range")
	}
}
