package shipper_test

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/plugins"
	"github.com/agentpdp/agentpdp/plugins/sink"
)

// receiver is an HTTP endpoint that collects shipped rows. respond decides
// each request's status (and may drop the connection after reading).
type receiver struct {
	mu      sync.Mutex
	rows    []map[string]any
	calls   []time.Time
	respond func(call int, w http.ResponseWriter) bool // false: do not accept the rows
	lost    map[int]bool                               // accept these calls' rows, then drop the connection unanswered
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	call := len(rc.calls)
	rc.calls = append(rc.calls, time.Now())
	rc.mu.Unlock()
	zr, err := gzip.NewReader(r.Body)
	if err != nil || r.Header.Get("Authorization") != "Bearer s3cret" || r.Header.Get("Content-Encoding") != "gzip" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	var rows []map[string]any
	sc := bufio.NewScanner(zr)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			rows = append(rows, m)
		}
	}
	if rc.respond != nil && !rc.respond(call, w) {
		return
	}
	rc.mu.Lock()
	rc.rows = append(rc.rows, rows...)
	rc.mu.Unlock()
	if rc.lost[call] {
		panic(http.ErrAbortHandler) // the rows are in, the answer never leaves
	}
}

func (rc *receiver) seqs() []int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []int
	for _, r := range rc.rows {
		out = append(out, int(r["seq"].(float64)))
	}
	return out
}

func httpSink(t *testing.T, url string) plugins.Sink {
	t.Helper()
	token := filepath.Join(t.TempDir(), "token")
	os.WriteFile(token, []byte("s3cret\n"), 0o600)
	s, err := sink.New(sink.Config{Name: "upstream", Type: "http", URL: url, TokenFile: token})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestShip_HTTP(t *testing.T) {
	path, origin := pdptest.LogWith(t, 30)
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	if err := pdptest.Shipper(t, path, httpSink(t, srv.URL)).Once(t.Context()); err != nil {
		t.Fatal(err)
	}
	seqs := rc.seqs()
	if len(seqs) != 30 || !sort.IntsAreSorted(seqs) || seqs[0] != 1 {
		t.Fatalf("received %v", seqs)
	}
	first := rc.rows[0]
	if first["origin"] != origin || first["kind"] != "decision" || first["decision_id"] != "d-0" || first["decision"] != "allow" || first["hash"] == "" {
		t.Errorf("a shipped decision row: %v", first)
	}
	// Shipping again sends nothing: the cursor moved.
	calls := len(rc.calls)
	if err := pdptest.Shipper(t, path, httpSink(t, srv.URL)).Once(t.Context()); err != nil || len(rc.calls) != calls {
		t.Errorf("a second run shipped again: %v, %d calls", err, len(rc.calls)-calls)
	}
}

func TestShip_OutageThenBack(t *testing.T) {
	path, _ := pdptest.LogWith(t, 40)
	// Call 1 is accepted but its answer is lost, so its batch comes again.
	rc := &receiver{lost: map[int]bool{1: true}, respond: func(call int, w http.ResponseWriter) bool {
		switch {
		case call >= 2 && call < 5:
			w.Header().Set("Retry-After", "0")
			http.Error(w, "down", http.StatusServiceUnavailable)
			return false
		case call == 5:
			w.Header().Set("Retry-After", "1")
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return false
		}
		return true
	}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	s := pdptest.Shipper(t, path, httpSink(t, srv.URL))
	s.MinBackoff = 10 * time.Millisecond
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	go s.Run(ctx)
	// Wait for the shipper's own acknowledgement, not just the receiver's
	// copy: the receiver holds a batch before its answer reaches the shipper.
	for {
		seqs := rc.seqs()
		if len(seqs) > 0 && seqs[len(seqs)-1] == 40 && s.Status(context.Background())[0].Cursor == 40 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("not everything arrived and was acknowledged: %v", seqs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	// Every row, in order; the only duplicates are the batch whose answer was lost.
	seen := map[int]int{}
	prev := 0
	for _, s := range rc.seqs() {
		if seen[s] == 0 && s != prev+1 {
			t.Fatalf("out of order: %d after %d", s, prev)
		}
		if seen[s] == 0 {
			prev = s
		}
		seen[s]++
	}
	for seq := 1; seq <= 40; seq++ {
		want := 1
		if seq >= 8 && seq <= 14 { // the second batch of 7
			want = 2
		}
		if seen[seq] != want {
			t.Errorf("seq %d arrived %d times, want %d", seq, seen[seq], want)
		}
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if wait := rc.calls[6].Sub(rc.calls[5]); wait < 900*time.Millisecond {
		t.Errorf("Retry-After: 1 was not honoured: retried after %v", wait)
	}
	st := s.Status(context.Background())[0]
	if st.Lag != 0 || st.Failures < 5 || st.Cursor != 40 {
		t.Errorf("status: %+v", st)
	}
}

func TestShip_PermanentErrorStops(t *testing.T) {
	path, _ := pdptest.LogWith(t, 10)
	rc := &receiver{respond: func(int, http.ResponseWriter) bool { return true }}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.mu.Lock()
		rc.calls = append(rc.calls, time.Now())
		rc.mu.Unlock()
		http.Error(w, "schema mismatch", http.StatusUnprocessableEntity)
	}))
	defer srv.Close()
	s := pdptest.Shipper(t, path, httpSink(t, srv.URL))
	done := make(chan struct{})
	go func() { s.Run(t.Context()); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a 422 was retried forever")
	}
	st := s.Status(context.Background())[0]
	if !st.Stopped || st.Cursor != 0 || st.Lag != 10 || !strings.Contains(st.LastError, "422") || len(rc.calls) != 1 {
		t.Errorf("status after a 422: %+v, %d calls", st, len(rc.calls))
	}
}

func TestShip_FileRotates(t *testing.T) {
	path, _ := pdptest.LogWith(t, 50)
	out := filepath.Join(t.TempDir(), "ship", "archive.jsonl")
	sink, err := sink.New(sink.Config{Name: "archive", Type: "file", Path: out, MaxBytes: 2000})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	if err := pdptest.Shipper(t, path, sink).Once(t.Context()); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(out + "*")
	if len(files) < 3 {
		t.Errorf("no rotation: %v", files)
	}
	seen := map[int]bool{}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var m struct{ Seq int }
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			seen[m.Seq] = true
		}
		if st, _ := os.Stat(f); st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v", f, st.Mode())
		}
	}
	if len(seen) != 50 {
		t.Errorf("rows across rotated files: %d, want 50", len(seen))
	}
}

func TestNew_RefusesWhatIsNotBuilt(t *testing.T) {
	for _, c := range []sink.Config{{Name: "o", Type: "otlp"}, {Name: "p", Type: "plugin"}, {Name: "x", Type: "kafka"}, {Type: "file"}, {Name: "h", Type: "http", URL: "ftp://x"}} {
		if _, err := sink.New(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// Every shipped row has origin once: a checkpoint's own origin is log_origin.
func TestShip_CheckpointRowsHaveOneOrigin(t *testing.T) {
	privPEM, _, err := decisionlog.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := decisionlog.ParsePrivateKey(privPEM)
	path := filepath.Join(t.TempDir(), "d.db")
	l, err := decisionlog.Open(t.Context(), path, decisionlog.Options{SigningKey: priv, CheckpointEvery: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 7 {
		l.Append(t.Context(), &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: json.RawMessage(fmt.Sprintf(`{"decision_id":"d-%d"}`, i))})
	}
	l.Close(t.Context())
	out := filepath.Join(t.TempDir(), "rows.jsonl")
	sink, _ := sink.New(sink.Config{Name: "f", Type: "file", Path: out})
	defer sink.Close()
	if err := pdptest.Shipper(t, path, sink).Once(t.Context()); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	checkpoints := 0
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if n := strings.Count(line, `"origin":`); n != 1 {
			t.Errorf("origin %d times: %s", n, line)
		}
		if strings.Contains(line, `"kind":"checkpoint"`) {
			checkpoints++
			if _, err := decisionlog.ParseCheckpoint([]byte(line)); err != nil || !strings.Contains(line, `"log_origin":`) {
				t.Errorf("a shipped checkpoint does not parse back: %v\n%s", err, line)
			}
		}
	}
	if checkpoints < 2 {
		t.Errorf("%d checkpoint rows shipped", checkpoints)
	}
}
