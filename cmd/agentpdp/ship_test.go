package main

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// ingest is an upstream receiver: it keeps the set of (origin, seq) it got.
type ingest struct {
	mu   sync.Mutex
	seqs map[int64]int
}

func (in *ingest) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	zr, err := gzip.NewReader(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	in.mu.Lock()
	defer in.mu.Unlock()
	for sc.Scan() {
		var row struct {
			Origin string
			Seq    int64
		}
		if json.Unmarshal(sc.Bytes(), &row) == nil && row.Origin != "" {
			in.seqs[row.Seq]++
		}
	}
}

func (in *ingest) has(last int64) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	for s := int64(1); s <= last; s++ {
		if in.seqs[s] == 0 {
			return false
		}
	}
	return true
}

func appendConfig(t *testing.T, d *daemon, yaml string) {
	t.Helper()
	f, err := os.OpenFile(d.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString(yaml)
}

// TestServe_ShipsThroughAKill: the daemon ships to a real HTTP receiver, is
// SIGKILLed mid-load and mid-ship, restarts, and every row arrives.
func TestServe_ShipsThroughAKill(t *testing.T) {
	in := &ingest{seqs: map[int64]int{}}
	srv := httptest.NewServer(in)
	defer srv.Close()
	d := newDaemonDir(t)
	appendConfig(t, d, fmt.Sprintf("sinks:\n  - {name: upstream, type: http, url: %q, batch_size: 50}\n  - {name: archive, type: file, path: %q}\n",
		srv.URL+"/ingest", filepath.Join(d.dir, "var", "archive.jsonl")))
	d.start()
	finish := startLoad(t, d.sock(), 8)
	time.Sleep(500 * time.Millisecond)
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
	answered := finish()
	d.start()
	// The log's last row now, after the restart's policy load.
	r, err := decisionlog.OpenReader(d.db())
	if err != nil {
		t.Fatal(err)
	}
	st, _ := r.Stats(t.Context())
	r.Close()
	deadline := time.Now().Add(30 * time.Second)
	for !in.has(st.LastSeq) {
		if time.Now().After(deadline) {
			t.Fatalf("rows 1 to %d did not all arrive (%d answered before the kill)", st.LastSeq, len(answered))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The receiver holds a batch before its answer reaches the shipper:
	// wait for the cursor, the shipper's own record of the acknowledgement.
	var status struct {
		Sinks []struct {
			Sink   string
			Cursor int64
			Lag    int64
		}
	}
	for {
		if err := client.New(d.asock()).Do(t.Context(), http.MethodGet, "/v1/status", nil, &status); err != nil {
			t.Fatal(err)
		}
		if len(status.Sinks) == 2 && status.Sinks[0].Sink == "upstream" && status.Sinks[0].Cursor >= st.LastSeq {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sink status: %+v", status.Sinks)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, body := scrape(t, d.asock()); !strings.Contains(body, `agentpdp_ship_rows_total{sink="upstream"}`) {
		t.Error("no ship metrics")
	}
	t.Logf("%d decisions answered before SIGKILL; rows 1 to %d all shipped", len(answered), st.LastSeq)
}

func TestShipOnceAndPrune(t *testing.T) {
	d := newDaemonDir(t)
	appendConfig(t, d, "checkpoints: {every_rows: 20}\n")
	d.start()
	// Enough rows that a checkpoint lies below the newest 10, however
	// slowly a loaded machine answers.
	var answered []*wire.Decision
	for round := 0; len(answered) < 50 && round < 20; round++ {
		finish := startLoad(t, d.sock(), 4)
		time.Sleep(300 * time.Millisecond)
		answered = append(answered, finish()...)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.done

	// A separate process ships with --once, from the same config plus a sink.
	archive := filepath.Join(d.dir, "archive.jsonl")
	appendConfig(t, d, fmt.Sprintf("sinks:\n  - {name: archive, type: file, path: %q}\n", archive))
	code, out, stderr := runCLI(t, "ship", "--config", d.config, "--once")
	if code != 0 || !strings.Contains(out, "archive: shipped to seq") {
		t.Fatalf("ship --once: %d %s %s", code, out, stderr)
	}
	b, _ := os.ReadFile(archive)
	shipped := strings.Count(string(b), "\n")
	if shipped < len(answered) {
		t.Errorf("%d rows shipped for %d decisions", shipped, len(answered))
	}

	// Pruning needs the signing key: it leaves a signed record.
	code, _, stderr = runCLI(t, "log", "prune", "--config", d.config, "--max-rows", "10", "--signing-key", filepath.Join(d.dir, "nokey"))
	if code == 0 || !strings.Contains(stderr, "signed with the log's key") {
		t.Errorf("log prune without the key: %d %s", code, stderr)
	}
	// Prune what is shipped; the log still verifies from its anchor.
	code, out, stderr = runCLI(t, "log", "prune", "--config", d.config, "--max-rows", "10")
	if code != 0 || !strings.Contains(out, "the log now starts at the checkpoint") {
		t.Fatalf("log prune: %d %s %s", code, out, stderr)
	}
	code, out, stderr = runCLI(t, "log", "verify", "--db", d.db(), "--pubkey", filepath.Join(d.dir, "var", "signing.key.pub"))
	if code != 0 || !strings.Contains(out, "every signature verified") {
		t.Errorf("verify after pruning: %d %s %s", code, out, stderr)
	}
	// A sink that has shipped nothing holds everything back.
	code, _, stderr = runCLI(t, "log", "prune", "--config", d.config, "--max-rows", "5", "--sink", "archive", "--sink", "never-shipped")
	if code != exitFail || !strings.Contains(stderr, "nothing may be pruned yet") {
		t.Errorf("prune held by an unshipped sink: %d %s", code, stderr)
	}
}

// TestLogPrune_NeverConnectedSinkHoldsEverything: an http sink whose
// receiver was down from the start has no cursor. log prune must still
// count it (it reads the daemon's config) and delete nothing; without the
// config it refuses. (It used to count only sinks with a cursor, and
// deleted 17 rows the receiver never got.)
func TestLogPrune_NeverConnectedSinkHoldsEverything(t *testing.T) {
	d := newDaemonDir(t)
	appendConfig(t, d, "checkpoints: {every_rows: 5}\nsinks:\n  - {name: upstream, type: http, url: \"http://127.0.0.1:1/ingest\"}\n")
	d.start()
	finish := startLoad(t, d.sock(), 2)
	time.Sleep(500 * time.Millisecond)
	finish()
	d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.done
	count := func() int {
		code, out, stderr := runCLI(t, "log", "export", "--db", d.db())
		if code != 0 {
			t.Fatalf("export: %s", stderr)
		}
		return strings.Count(out, "\n")
	}
	before := count()
	if before < 12 { // enough for a checkpoint (every 5 rows) below the newest 3
		t.Fatalf("only %d rows", before)
	}
	code, _, stderr := runCLI(t, "log", "prune", "--config", d.config, "--max-rows", "3")
	if code != exitFail || !strings.Contains(stderr, "nothing may be pruned yet") {
		t.Errorf("prune with a never-connected sink: exit %d, %s", code, stderr)
	}
	code, _, stderr = runCLI(t, "log", "prune", "--db", d.db(), "--max-rows", "3")
	if code != exitUsage || !strings.Contains(stderr, "--config") {
		t.Errorf("prune without the config: exit %d, %s", code, stderr)
	}
	if after := count(); after != before {
		t.Errorf("%d rows deleted that the http sink never shipped", before-after)
	}
}
