package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
)

// Issue 17: a sink added to a config with a long log shipped every row
// since seq 1. start: now ships from the sink's first start, agentpdp sinks
// shows where each sink started, and a never-connected start: now sink
// does not hold back log prune for the rows before its start.
func TestCLI_SinkStartNow(t *testing.T) {
	dir := t.TempDir()
	keyFile, _, priv := signingKeyIn(t, dir)
	db := filepath.Join(dir, "d.db")
	appendRows := func(n int) {
		t.Helper()
		l, err := decisionlog.Open(t.Context(), db, decisionlog.Options{SigningKey: priv, CheckpointEvery: 10})
		must(t, err)
		for i := range n {
			must(t, l.Append(t.Context(), &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(),
				Body: fmt.Appendf(nil, `{"decision_id":"d-%d","decision":"allow","principal":"Agent::\"a\"","request":{"principal":{"type":"Agent","id":"a"}}}`, i)}))
		}
		must(t, l.Close(t.Context())) // signs a checkpoint
	}
	appendRows(36) // 40 rows with the checkpoints
	lastSeq := func() int64 {
		r, err := decisionlog.OpenReader(db)
		must(t, err)
		defer r.Close()
		n, err := r.LastSeq(t.Context())
		must(t, err)
		return n
	}
	history := lastSeq()
	fresh, archive := filepath.Join(dir, "fresh.jsonl"), filepath.Join(dir, "archive.jsonl")
	sinks := fmt.Sprintf("  - {name: fresh, type: file, path: %s, start: now}\n  - {name: archive, type: file, path: %s}\n", fresh, archive)
	config := filepath.Join(dir, "agentpdp.yaml")
	must(t, os.WriteFile(config, []byte(fmt.Sprintf("db: %s\nsigning_key: %s\nsinks:\n%s", db, keyFile, sinks)), 0o644))

	code, out, stderr := runCLI(t, "ship", "--config", config, "--once")
	want := fmt.Sprintf("fresh: shipped to seq %d (0 rows this run)\narchive: shipped to seq %d (%d rows this run)\n", history, history, history)
	if code != 0 || out != want {
		t.Fatalf("ship --once: exit %d\n got %q\nwant %q\n%s", code, out, want, stderr)
	}
	if got := shippedSeqs(t, fresh); len(got) != 0 {
		t.Errorf("start: now shipped the history: %v", got)
	}
	code, out, stderr = runCLI(t, "sinks", "--config", config)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("now: ships the rows after seq %d, first seen ", history)) || !strings.Contains(out, "oldest: ships every row") {
		t.Errorf("agentpdp sinks: %d\n%s%s", code, out, stderr)
	}
	// A configured sink not seen yet is listed in its place by name, not
	// after the seen ones, so that the list keeps its order when it is seen.
	config2 := filepath.Join(dir, "agentpdp-2.yaml")
	must(t, os.WriteFile(config2, []byte(fmt.Sprintf("db: %s\nsigning_key: %s\nsinks:\n%s  - {name: aaa, type: file, path: %s}\n", db, keyFile, sinks, filepath.Join(dir, "aaa.jsonl"))), 0o644))
	code, out, stderr = runCLI(t, "sinks", "--config", config2)
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		names = append(names, strings.Fields(line)[0])
	}
	if code != 0 || strings.Join(names, " ") != "aaa archive fresh" {
		t.Errorf("agentpdp sinks lists %v, want aaa archive fresh:\n%s%s", names, out, stderr)
	}

	appendRows(2)
	if code, out, stderr := runCLI(t, "ship", "--config", config, "--once"); code != 0 {
		t.Fatalf("ship --once: %d %s %s", code, out, stderr)
	}
	var want2 []int64
	for s := history + 1; s <= lastSeq(); s++ {
		want2 = append(want2, s)
	}
	if got := shippedSeqs(t, fresh); fmt.Sprint(got) != fmt.Sprint(want2) || len(want2) != 3 {
		t.Errorf("start: now shipped %v, want the rows written after its start %v", got, want2)
	}

	// A sink added with start: now whose receiver was never reached: prune
	// deletes the rows before its start (it was first seen by prune).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	down := ln.Addr().String()
	ln.Close()
	withLate := filepath.Join(dir, "late.yaml")
	must(t, os.WriteFile(withLate, []byte(fmt.Sprintf("db: %s\nsigning_key: %s\nsinks:\n%s  - {name: late, type: http, url: \"http://%s/ingest\", start: now}\n", db, keyFile, sinks, down)), 0o644))
	code, out, _ = runCLI(t, "sinks", "--config", withLate)
	if code != 0 || !strings.Contains(out, "late") || !strings.Contains(out, "not seen yet: start: now") {
		t.Errorf("a configured sink not seen yet: %d\n%s", code, out)
	}
	last := lastSeq()
	code, out, stderr = runCLI(t, "log", "prune", "--config", withLate, "--max-rows", "5")
	if code != 0 || !strings.HasPrefix(out, "pruned ") {
		t.Fatalf("log prune with a never-connected start: now sink: exit %d %s %s", code, out, stderr)
	}
	code, out, _ = runCLI(t, "sinks", "--config", withLate, "--json")
	var late map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		must(t, json.Unmarshal([]byte(line), &m))
		if m["sink"] == "late" {
			late = m
		}
	}
	if code != 0 || late == nil || late["start"] != "now" || late["start_seq"] != float64(last) || late["cursor"] != float64(last) || late["seen"] != true || late["started_at"] == nil {
		t.Errorf("sinks --json after prune: %d %v\n%s", code, late, out)
	}
}

// shippedSeqs are the seqs of the rows a file sink wrote.
func shippedSeqs(t *testing.T, path string) []int64 {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	must(t, err)
	defer f.Close()
	var seqs []int64
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r struct{ Seq int64 }
		must(t, json.Unmarshal(sc.Bytes(), &r))
		seqs = append(seqs, r.Seq)
	}
	return seqs
}
