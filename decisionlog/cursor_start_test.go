package decisionlog_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
)

// Issue 17: a sink added to a log with a history shipped every row since
// seq 1. A sink with start: now begins at the log's last seq when it is
// first seen, records that where cursors live, keeps it, and does not hold
// back retention for the rows before it.
func TestCursors_Start(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.db")
	l := open(t, path, decisionlog.Options{})
	for i := range 10 {
		l.Append(t.Context(), decision(fmt.Sprintf("d-%d", i), "a", "allow"))
	}
	c, err := decisionlog.OpenCursors(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before := time.Now()
	now, err := c.Start(t.Context(), "fresh", decisionlog.StartNow)
	if err != nil {
		t.Fatal(err)
	}
	if now.Seq != 10 || now.StartSeq != 10 || now.Start != decisionlog.StartNow || now.Started == nil || now.Started.Before(before.Add(-time.Second)) {
		t.Errorf("start: now on a log of 10 rows: %+v", now)
	}
	old, err := c.Start(t.Context(), "archive", decisionlog.StartOldest)
	if err != nil || old.Seq != 0 || old.StartSeq != 0 || old.Start != decisionlog.StartOldest || old.Started == nil {
		t.Errorf("start: oldest: %+v %v", old, err)
	}
	if _, err := c.Start(t.Context(), "x", "latest"); err == nil {
		t.Error("an unknown start mode was accepted")
	}
	// Never connected: the fresh sink holds back no row before its start;
	// archive holds every row it has not shipped, which is all of them.
	if got, err := l.PruneBound(t.Context(), 0, 3, []string{"fresh"}, time.Now()); err != nil || got != 7 {
		t.Errorf("prune bound with a never-connected start: now sink: %d %v, want 7", got, err)
	}
	if got, err := l.PruneBound(t.Context(), 0, 3, []string{"fresh", "archive"}, time.Now()); err != nil || got != 0 {
		t.Errorf("prune bound with a start: oldest sink that shipped nothing: %d %v, want 0", got, err)
	}

	// Seen again, under another mode or later: the first start stands.
	l.Append(t.Context(), decision("d-10", "a", "allow"))
	again, err := c.Start(t.Context(), "fresh", decisionlog.StartOldest)
	if err != nil || again.Start != decisionlog.StartNow || again.StartSeq != 10 || again.Seq != 10 || !again.Started.Equal(*now.Started) {
		t.Errorf("a second start changed the first: %+v %v", again, err)
	}
	if err := c.Advance(t.Context(), "fresh", 11); err != nil {
		t.Fatal(err)
	}
	if st, ok, err := c.State(t.Context(), "fresh"); !ok || err != nil || st.Seq != 11 || st.StartSeq != 10 || st.Start != decisionlog.StartNow {
		t.Errorf("after shipping one row: %+v %v %v", st, ok, err)
	}
	// A cursor made by Advance alone (as before starts were recorded)
	// reads as oldest.
	if err := c.Advance(t.Context(), "legacy", 3); err != nil {
		t.Fatal(err)
	}
	all, err := l.CursorStates(t.Context())
	if err != nil || len(all) != 3 || all[0].Sink != "archive" || all[1].Sink != "fresh" || all[2].Sink != "legacy" ||
		all[2].Start != decisionlog.StartOldest || all[2].StartSeq != 0 || all[2].Started != nil || all[2].Seq != 3 {
		t.Errorf("cursor states: %+v %v", all, err)
	}

	// Retention: the fresh sink, which has shipped one row, holds back
	// nothing before its start; archive, which started at the oldest row and
	// shipped nothing, holds everything.
	for _, tt := range []struct {
		sinks []string
		want  int64
	}{{[]string{"fresh"}, 8}, {[]string{"fresh", "archive"}, 0}} {
		got, err := l.PruneBound(t.Context(), 0, 3, tt.sinks, time.Now())
		if err != nil || got != tt.want {
			t.Errorf("prune bound with sinks %v: %d %v, want %d", tt.sinks, got, err, tt.want)
		}
	}
}
