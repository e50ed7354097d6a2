package shipper_test

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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

// TestShip_PermanentErrorStopsVisibly: a sink refused for good is stopped
// in its status, its gauge and its log, and keeps its rows; it is not
// retried at once, but it is not given up either.
func TestShip_PermanentErrorStopsVisibly(t *testing.T) {
	path, _ := pdptest.LogWith(t, 10)
	rc := &receiver{respond: func(int, http.ResponseWriter) bool { return true }}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.mu.Lock()
		rc.calls = append(rc.calls, time.Now())
		rc.mu.Unlock()
		http.Error(w, "schema mismatch", http.StatusUnprocessableEntity)
	}))
	defer srv.Close()
	var logs strings.Builder
	var logMu sync.Mutex
	s := pdptest.Shipper(t, path, httpSink(t, srv.URL))
	s.Logger = slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collectors()...)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for !s.Status(context.Background())[0].Stopped {
		if time.Now().After(deadline) {
			t.Fatal("a 422 did not stop the sink")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	st := s.Status(context.Background())[0]
	if st.Cursor != 0 || st.Lag != 10 || !strings.Contains(st.LastError, "422") || !strings.Contains(st.LastError, "schema mismatch") || len(rc.calls) != 1 {
		t.Errorf("status after a 422: %+v, %d calls", st, len(rc.calls))
	}
	if v := gauge(t, reg, "agentpdp_sink_stopped"); v != 1 {
		t.Errorf("agentpdp_sink_stopped = %v", v)
	}
	logMu.Lock()
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "for good") {
		t.Errorf("no error logged:\n%s", logs.String())
	}
	logMu.Unlock()
	cancel()
	<-done
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// gauge reads one metric's value from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			m := mf.GetMetric()[0]
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// logSized writes decisions whose bodies are about sizes[i] bytes.
func logSized(t *testing.T, sizes []int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "d.db")
	l, err := decisionlog.Open(t.Context(), path, decisionlog.Options{Durability: decisionlog.DurabilityNormal})
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range sizes {
		body := fmt.Sprintf(`{"decision_id":"d-%d","decision":"allow","pad":%q}`, i, strings.Repeat("x", n))
		if err := l.Append(t.Context(), &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: json.RawMessage(body)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	return path
}

// limitedReceiver refuses a body over limit bytes (after gzip) with
// refuse, as receivers with a body limit do; it keeps what it accepts.
type limitedReceiver struct {
	receiver
	limit  int
	refuse func(w http.ResponseWriter)
	sizes  []int
}

func (lr *limitedReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	zr, err := gzip.NewReader(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(zr)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > lr.limit {
		lr.refuse(w)
		return
	}
	lr.mu.Lock()
	defer lr.mu.Unlock()
	lr.sizes = append(lr.sizes, len(body))
	for _, line := range strings.Split(strings.TrimSpace(string(body)), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			lr.rows = append(lr.rows, m)
		}
	}
}

// TestShip_TooLargeSplitsAndStubs: a receiver that answers "too large" (a
// 413, or a 400 that says so, as an OpenTelemetry Collector with
// max_request_body_size does) gets smaller batches, and a row it refuses
// alone arrives as a stub; every seq arrives, in order, and the sink goes
// on. (The shipper used to stop for good at the first such answer.)
func TestShip_TooLargeSplitsAndStubs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		refuse func(w http.ResponseWriter)
	}{
		{"413", func(w http.ResponseWriter) { http.Error(w, "payload too large", http.StatusRequestEntityTooLarge) }},
		{"400", func(w http.ResponseWriter) { http.Error(w, "http: request body too large", http.StatusBadRequest) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sizes := make([]int, 40)
			for i := range sizes {
				sizes[i] = 300
			}
			sizes[17] = 20000 // one agent request near the limit
			path := logSized(t, sizes)
			lr := &limitedReceiver{limit: 8000, refuse: tc.refuse}
			srv := httptest.NewServer(lr)
			defer srv.Close()
			sink, err := sink.New(sink.Config{Name: "upstream", Type: "http", URL: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			s := pdptest.Shipper(t, path, sink)
			s.Targets[0].BatchSize = 100
			s.MinBackoff = 10 * time.Millisecond
			reg := prometheus.NewRegistry()
			reg.MustRegister(s.Collectors()...)
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			go s.Run(ctx)
			for s.Status(context.Background())[0].Cursor != 40 {
				if ctx.Err() != nil {
					t.Fatalf("not everything shipped: %+v", s.Status(context.Background())[0])
				}
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
			seqs := lr.seqs()
			if len(seqs) != 40 || !sort.IntsAreSorted(seqs) {
				t.Fatalf("received %v", seqs)
			}
			lr.mu.Lock()
			stub := lr.rows[17]
			lr.mu.Unlock()
			if stub["too_large"] != true || stub["seq"] != 18.0 || stub["hash"] == nil || stub["kind"] != "decision" || stub["size"].(float64) < 20000 || stub["pad"] != nil {
				t.Errorf("the refused row's stub: %v", stub)
			}
			st := s.Status(context.Background())[0]
			if st.TooLarge != 1 || st.Stopped {
				t.Errorf("status: %+v", st)
			}
			if v := gauge(t, reg, "agentpdp_ship_too_large_rows_total"); v != 1 {
				t.Errorf("too-large counter %v", v)
			}
		})
	}
}

// TestShip_BatchMaxBytes: no batch is larger than batch_max_bytes (a row
// larger than that goes alone).
func TestShip_BatchMaxBytes(t *testing.T) {
	sizes := make([]int, 30)
	for i := range sizes {
		sizes[i] = 1000
	}
	path := logSized(t, sizes)
	lr := &limitedReceiver{limit: 1 << 20, refuse: func(w http.ResponseWriter) { w.WriteHeader(http.StatusRequestEntityTooLarge) }}
	srv := httptest.NewServer(lr)
	defer srv.Close()
	sink, err := sink.New(sink.Config{Name: "upstream", Type: "http", URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	s := pdptest.Shipper(t, path, sink)
	s.Targets[0].BatchSize = 500
	s.Targets[0].BatchMaxBytes = 5000
	if err := s.Once(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(lr.seqs()) != 30 {
		t.Fatalf("received %v", lr.seqs())
	}
	for _, n := range lr.sizes {
		if n > 5000+30 { // the newline per row
			t.Errorf("a batch of %d bytes", n)
		}
	}
	if len(lr.sizes) < 6 {
		t.Errorf("%d batches for 30 rows of 1 KB under 5000 bytes", len(lr.sizes))
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

// Issue 17: a sink added to a log with a history copied all of it. With
// start: now it ships the rows written after it was first seen, says so in
// its status and its log, and keeps that start when the config changes.
func TestShip_StartNow(t *testing.T) {
	path, _ := pdptest.LogWith(t, 30)
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	var logs strings.Builder
	var logMu sync.Mutex
	s := pdptest.Shipper(t, path, httpSink(t, srv.URL))
	s.Targets[0].Start = decisionlog.StartNow
	s.Logger = slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))
	if err := s.Once(t.Context()); err != nil {
		t.Fatal(err)
	}
	st := s.Status(t.Context())[0]
	if len(rc.seqs()) != 0 || st.Start != decisionlog.StartNow || st.StartSeq != 30 || st.Cursor != 30 || st.Lag != 0 || st.StartedAt == nil {
		t.Fatalf("start: now on 30 rows: received %v, status %+v", rc.seqs(), st)
	}
	if !strings.Contains(logs.String(), "start: now") || !strings.Contains(logs.String(), "start_seq=30") {
		t.Errorf("the start is not logged:\n%s", logs.String())
	}
	pdptest.LogWithInto(t, path, 5)
	if err := s.Once(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(rc.seqs()); got != "[31 32 33 34 35]" {
		t.Errorf("after 5 more rows, received %s", got)
	}

	// The same sink configured start: oldest later keeps its recorded
	// start (and says so); it does not copy the history after all.
	logs.Reset()
	s2 := pdptest.Shipper(t, path, httpSink(t, srv.URL))
	s2.Targets[0].Start = decisionlog.StartOldest
	s2.Logger = slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))
	if err := s2.Once(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := s2.Status(t.Context())[0]; st.Start != decisionlog.StartNow || st.StartSeq != 30 || len(rc.seqs()) != 5 {
		t.Errorf("a changed start moved the recorded one: %+v, received %v", st, rc.seqs())
	}
	if !strings.Contains(logs.String(), "configured_start=oldest start=now") {
		t.Errorf("the ignored start is not logged:\n%s", logs.String())
	}

	// The default is oldest: a new sink ships every row.
	other := &receiver{}
	srv2 := httptest.NewServer(other)
	defer srv2.Close()
	s3 := pdptest.Shipper(t, path, httpSink(t, srv2.URL))
	s3.Targets[0].Sink = renamed{s3.Targets[0].Sink, "archive"}
	if err := s3.Once(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := s3.Status(t.Context())[0]; len(other.seqs()) != 35 || st.Start != decisionlog.StartOldest || st.StartSeq != 0 {
		t.Errorf("the default start: received %d rows, status %+v", len(other.seqs()), st)
	}
}

// renamed is a sink under another name.
type renamed struct {
	plugins.Sink
	name string
}

func (r renamed) Name() string { return r.name }
