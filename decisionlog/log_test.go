package decisionlog_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/agentpdp/agentpdp/decisionlog"
)

func open(t *testing.T, path string, opts decisionlog.Options) *decisionlog.Log {
	t.Helper()
	l, err := decisionlog.Open(t.Context(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

func decision(id, principal, decision string) *decisionlog.Entry {
	body := fmt.Sprintf(`{"decision_id":%q,"decision":%q,"principal":%q,"request":{"principal":{"type":"Agent","id":%q},"session_id":"s-1"}}`,
		id, decision, `Agent::"`+principal+`"`, principal)
	return &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: json.RawMessage(body)}
}

// verifyChain checks the file's hash chain and returns its length.
func verifyChain(t *testing.T, path string) int64 {
	t.Helper()
	r, err := decisionlog.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rep, err := r.Verify(t.Context(), decisionlog.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return rep.Rows
}

func TestLog_AppendChainsAndPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.db")
	l := open(t, path, decisionlog.Options{})
	a, b := decision("d-1", "a", "allow"), decision("d-2", "b", "deny")
	if err := l.Append(t.Context(), a, b); err != nil {
		t.Fatal(err)
	}
	if a.Seq != 1 || b.Seq != 2 || len(a.Hash) != 32 {
		t.Fatalf("seqs %d, %d", a.Seq, b.Seq)
	}
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(t.Context(), decision("d-3", "a", "allow")); !errors.Is(err, decisionlog.ErrClosed) {
		t.Errorf("append after close: got %v, want ErrClosed", err)
	}

	// Reopened, the chain continues from the last row on disk.
	l2 := open(t, path, decisionlog.Options{})
	c := decision("d-3", "a", "allow")
	if err := l2.Append(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	if c.Seq != 3 {
		t.Errorf("seq after reopen: %d", c.Seq)
	}
	if n := verifyChain(t, path); n != 3 {
		t.Errorf("chain has %d rows", n)
	}
	if l2.Origin() == "" {
		t.Error("no origin")
	}
}

func TestLog_ConcurrentAppendsShareCommits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.db")
	l := open(t, path, decisionlog.Options{MaxBatch: 64})
	const writers, each = 32, 50
	var wg sync.WaitGroup
	seqs := make(chan int64, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				e := decision(fmt.Sprintf("d-%d-%d", w, i), fmt.Sprintf("agent-%d", w), "allow")
				if err := l.Append(t.Context(), e); err != nil {
					t.Error(err)
					return
				}
				seqs <- e.Seq
			}
		})
	}
	wg.Wait()
	close(seqs)
	seen := map[int64]bool{}
	for s := range seqs {
		if seen[s] {
			t.Fatalf("seq %d given twice", s)
		}
		seen[s] = true
	}
	if len(seen) != writers*each {
		t.Fatalf("%d seqs for %d appends", len(seen), writers*each)
	}
	if n := verifyChain(t, path); n != writers*each {
		t.Errorf("chain has %d rows, want %d", n, writers*each)
	}
	// 32 writers waiting on fsync: commits must have carried several each.
	st := l.WriterStats()
	if st.Entries != writers*each || st.Commits >= st.Entries {
		t.Errorf("no group commit: %d entries in %d commits", st.Entries, st.Commits)
	}
	t.Logf("%d entries in %d commits", st.Entries, st.Commits)
}

// TestLog_GroupWait: appends one at a time never wait for company, however
// long GroupWait is; after a large group, a commit waits for the entries
// announced with Expect (here until MaxBatch fills it).
func TestLog_GroupWait(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.db")
	l := open(t, path, decisionlog.Options{MaxBatch: 16, GroupWait: time.Hour, GroupMin: 4})
	// A hang would be the failure; make it a quick and clear one.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	appendGroup := func(prefix string, n int) {
		t.Helper()
		group := make([]*decisionlog.Entry, n)
		for i := range group {
			group[i] = decision(fmt.Sprintf("%s-%d", prefix, i), "a", "allow")
		}
		if err := l.Append(ctx, group...); err != nil {
			t.Fatalf("%s: %v", prefix, err)
		}
	}
	for i := range 5 {
		appendGroup(fmt.Sprintf("alone-%d", i), 1)
	}
	if st := l.WriterStats(); st.Commits != 5 {
		t.Fatalf("sequential appends: %+v, want a commit each", st)
	}
	appendGroup("group", 4) // arms the wait for the next commit
	var arrived []func()
	for range 16 {
		arrived = append(arrived, l.Expect())
	}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			if err := l.Append(ctx, decision(fmt.Sprintf("w-%d", i), "a", "allow")); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for _, f := range arrived {
		f()
	}
	if st := l.WriterStats(); st.Commits != 7 || st.Entries != 5+4+16 {
		t.Errorf("announced appends: %+v, want the 16 in one commit (7 commits, 25 entries)", st)
	}
}

func TestLog_AppendOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.db")
	l := open(t, path, decisionlog.Options{})
	if err := l.Append(t.Context(), decision("d-1", "a", "allow")); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, stmt := range []string{`UPDATE log SET body = '{}' WHERE seq = 1`, `DELETE FROM log WHERE seq = 1`} {
		if _, err := db.Exec(stmt); err == nil {
			t.Errorf("%s: allowed", stmt)
		}
	}
}

func TestLog_FileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.db")
	l := open(t, path, decisionlog.Options{})
	if err := l.Append(t.Context(), decision("d-1", "a", "allow")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %#o, want 0600", p, st.Mode().Perm())
		}
	}
}

// TestLog_PageSize: a new log gets 16 KiB pages in WAL mode; a log made
// with SQLite's default 4 KiB pages keeps them and is written as before.
func TestLog_PageSize(t *testing.T) {
	dir := t.TempDir()
	pageSize := func(path string) (size int, mode string) {
		db, err := sql.Open("sqlite3", path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.QueryRow(`SELECT p.page_size, j.journal_mode FROM pragma_page_size p, pragma_journal_mode j`).Scan(&size, &mode); err != nil {
			t.Fatal(err)
		}
		return size, mode
	}
	fresh := filepath.Join(dir, "new.db")
	open(t, fresh, decisionlog.Options{}).Close(t.Context())
	if size, mode := pageSize(fresh); size != 16384 || mode != "wal" {
		t.Errorf("new log: %d-byte pages, %s journal; want 16384, wal", size, mode)
	}

	old := filepath.Join(dir, "old.db")
	db, err := sql.Open("sqlite3", old)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE t(x)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	l := open(t, old, decisionlog.Options{})
	if err := l.Append(t.Context(), decision("d-1", "a", "allow")); err != nil {
		t.Fatal(err)
	}
	l.Close(t.Context())
	if size, _ := pageSize(old); size != 4096 {
		t.Errorf("existing log: %d-byte pages, want its own 4096", size)
	}
	if n := verifyChain(t, old); n != 1 {
		t.Errorf("existing log: %d rows, want 1", n)
	}
}

// TestLog_CheckpointsOffTheWriter: committed rows reach the database file
// while the log is open, long before the writer's own checkpoint (1,024
// pages) would copy them.
func TestLog_CheckpointsOffTheWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.db")
	l := open(t, path, decisionlog.Options{Durability: decisionlog.DurabilityNormal})
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	before := st.Size()
	for i := range 200 {
		if err := l.Append(t.Context(), decision(fmt.Sprintf("d-%d-%s", i, strings.Repeat("x", 1000)), "a", "allow")); err != nil {
			t.Fatal(err)
		}
	}
	// 200 rows of 1 KB: about 13 pages, far below 1,024.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() >= before+150_000 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("database file %d bytes after 200 KB of rows, from %d: nothing was checkpointed", st.Size(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLog_FailedCommitKeepsChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.db")
	l := open(t, path, decisionlog.Options{})
	if err := l.Append(t.Context(), decision("d-1", "a", "allow")); err != nil {
		t.Fatal(err)
	}
	// A body SQLite refuses fails its whole Append: nothing of it is written.
	bad := &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: json.RawMessage(`{"decision_id": not json`)}
	good := decision("d-2", "a", "allow")
	if err := l.Append(t.Context(), good, bad); err == nil {
		t.Fatal("malformed body accepted")
	}
	if _, err := l.Decision(t.Context(), "d-2"); !errors.Is(err, decisionlog.ErrNotFound) {
		t.Errorf("half a failed batch was written: %v", err)
	}
	next := decision("d-3", "a", "allow")
	if err := l.Append(t.Context(), next); err != nil {
		t.Fatal(err)
	}
	if next.Seq != 2 {
		t.Errorf("seq after a failed batch: %d, want 2", next.Seq)
	}
	verifyChain(t, path)
}

func TestReader_Query(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.db")
	l := open(t, path, decisionlog.Options{})
	for i, p := range []string{"a", "b", "a", "c", "a"} {
		dec := "allow"
		if i%2 == 1 {
			dec = "deny"
		}
		if err := l.Append(t.Context(), decision(fmt.Sprintf("d-%d", i), p, dec)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := decisionlog.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tests := []struct {
		name string
		f    decisionlog.Filter
		want []int64
	}{
		{"All", decisionlog.Filter{}, []int64{5, 4, 3, 2, 1}},
		{"PrincipalCedarForm", decisionlog.Filter{Principal: `Agent::"a"`}, []int64{5, 3, 1}},
		{"PrincipalBareID", decisionlog.Filter{Principal: "a"}, []int64{5, 3, 1}},
		{"Decision", decisionlog.Filter{Decision: "deny"}, []int64{4, 2}},
		{"Limit", decisionlog.Filter{Limit: 2}, []int64{5, 4}},
		{"BeforeSeq", decisionlog.Filter{BeforeSeq: 3, Limit: 1}, []int64{2}},
		{"DecisionID", decisionlog.Filter{DecisionID: "d-3"}, []int64{4}},
		{"Session", decisionlog.Filter{SessionID: "s-1", Decision: "allow"}, []int64{5, 3, 1}},
		{"Future", decisionlog.Filter{Since: time.Now().Add(time.Hour)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es, err := r.Query(t.Context(), tt.f)
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, e := range es {
				got = append(got, e.Seq)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	st, err := r.Stats(t.Context())
	if err != nil || st.LastSeq != 5 || st.Rows != 5 {
		t.Errorf("stats: %+v %v", st, err)
	}
	// Read-only really is read-only.
	if _, err := decisionlog.OpenReader(filepath.Join(t.TempDir(), "missing.db")); err == nil {
		t.Error("opened a log that does not exist")
	}
}

func TestEntry_MarshalJSONIsFlat(t *testing.T) {
	e := decision("d-1", "a", "allow")
	e.Seq, e.Hash = 7, []byte{0xab}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["seq"] != 7.0 || m["kind"] != "decision" || m["hash"] != "ab" || m["decision_id"] != "d-1" || m["decision"] != "allow" {
		t.Errorf("flat entry: %s", b)
	}
}

// The streamed hash is the hash of CanonicalBytes, as documented.
func TestChainHash_IsOverCanonicalBytes(t *testing.T) {
	e := decision("d-1", "a", "allow")
	e.Seq = 42
	prev := bytes.Repeat([]byte{7}, 32)
	want := sha256.Sum256(append(append([]byte{}, prev...), e.CanonicalBytes()...))
	if got := decisionlog.ChainHash(prev, e); !bytes.Equal(got, want[:]) {
		t.Errorf("ChainHash differs from SHA-256(prev || CanonicalBytes)")
	}
}

// Issue 11: a body SQLite's JSON functions refuse (nested deeper than its
// limit of 1,000, or malformed) rolled back its whole group commit, and
// every honest request that shared it failed too. It fails alone now.
func TestLog_BadRowFailsAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.db")
	// MaxWait holds every commit open long enough for all the appends
	// below to join it.
	l := open(t, path, decisionlog.Options{MaxWait: 300 * time.Millisecond, MaxBatch: 64})
	deep := strings.Repeat(`{"a":`, 2000) + `1` + strings.Repeat(`}`, 2000)
	bodies := map[string]string{
		"deep":      `{"decision_id":"deep","request":{"context":` + deep + `}}`,
		"malformed": `{"decision_id": not json`,
	}
	var wg sync.WaitGroup
	errs := map[string]error{}
	var mu sync.Mutex
	appendOne := func(name string, entries ...*decisionlog.Entry) {
		defer wg.Done()
		err := l.Append(t.Context(), entries...)
		mu.Lock()
		errs[name] = err
		mu.Unlock()
	}
	for i := range 6 {
		wg.Add(1)
		go appendOne(fmt.Sprintf("good-%d", i), decision(fmt.Sprintf("good-%d", i), "a", "allow"))
		if i == 2 {
			for name, body := range bodies {
				wg.Add(1)
				go appendOne(name, decision("with-"+name, "a", "allow"),
					&decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: json.RawMessage(body)})
			}
		}
	}
	wg.Wait()
	for name := range bodies {
		if !errors.Is(errs[name], decisionlog.ErrRowRefused) {
			t.Errorf("%s: got %v, want ErrRowRefused", name, errs[name])
		}
		// The request's entries are one unit: its good entry went too.
		if _, err := l.Decision(t.Context(), "with-"+name); !errors.Is(err, decisionlog.ErrNotFound) {
			t.Errorf("half of the refused request %s was written: %v", name, err)
		}
	}
	for i := range 6 {
		name := fmt.Sprintf("good-%d", i)
		if errs[name] != nil {
			t.Errorf("%s failed with its neighbour: %v", name, errs[name])
		}
		if _, err := l.Decision(t.Context(), name); err != nil {
			t.Errorf("%s not written: %v", name, err)
		}
	}
	if st := l.WriterStats(); st.Commits > 3 {
		t.Logf("commits: %d (the appends did not all share one)", st.Commits)
	}
	if n := verifyChain(t, path); n != 6 {
		t.Errorf("chain holds %d rows, want 6", n)
	}
}

// An empty decision id names no decision. The filter leaves an empty field
// out, so Decision("") matched every decision row and answered one:
// `log show ""` explained, and `log prove ""` proved, a decision nobody
// named, and an in-process Approve or Outcome of "" acted on it.
func TestReader_DecisionOfEmptyIDIsNotFound(t *testing.T) {
	l := open(t, filepath.Join(t.TempDir(), "d.db"), decisionlog.Options{})
	if err := l.Append(t.Context(), decision("d-1", "a", "step_up")); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"", " "} {
		if e, err := l.Decision(t.Context(), id); !errors.Is(err, decisionlog.ErrNotFound) {
			if e != nil {
				t.Errorf("Decision(%q): got the row of seq %d; want ErrNotFound", id, e.Seq)
			} else {
				t.Errorf("Decision(%q): %v; want ErrNotFound", id, err)
			}
		}
		if _, err := l.ProveDecision(t.Context(), id); err == nil {
			t.Errorf("ProveDecision(%q) proved a row", id)
		}
	}
}
