package decisionlog_test

import (
	"database/sql"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
)

// indexedDecision has every key the provenance index holds.
func indexedDecision(i int) *decisionlog.Entry {
	p := fmt.Sprintf("agent-%d", i%3)
	body := fmt.Sprintf(`{"decision_id":"d-%d","decision":"allow","principal":"Agent::\"%s\"","request":{"principal":{"type":"Agent","id":%q},`+
		`"session_id":"s-%d","task_id":"task-%d","trace_id":"trace-%d","tool_call_id":"call-%d","on_behalf_of":"user-%d","credential":{"id":"cred-%d"}}}`,
		i, p, p, i%5, i%7, i/2, i, i%4, i%6)
	e := &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: []byte(body)}
	// Most entries come with their keys, as the daemon's do; every fourth
	// has its row read back instead.
	if i%4 != 3 {
		k := columnKeys(e.Body)
		k.Principal, k.SessionID, k.TaskID = `Agent::"`+p+`"`, fmt.Sprintf("s-%d", i%5), fmt.Sprintf("task-%d", i%7)
		k.TraceID, k.ToolCallID = fmt.Sprintf("trace-%d", i/2), fmt.Sprintf("call-%d", i)
		k.OnBehalfOf, k.CredentialID = fmt.Sprintf("user-%d", i%4), fmt.Sprintf("cred-%d", i%6)
		e.Keys = k
	}
	return e
}

// indexQueries are one filter on each indexed key, with the seqs of
// indexedDecision(0…n-1) that match it (seq = i+1).
func indexQueries(n int) map[string]struct {
	f    decisionlog.Filter
	want func(i int) bool
} {
	return map[string]struct {
		f    decisionlog.Filter
		want func(i int) bool
	}{
		"principal":  {decisionlog.Filter{Principal: `Agent::"agent-1"`}, func(i int) bool { return i%3 == 1 }},
		"session":    {decisionlog.Filter{SessionID: "s-2"}, func(i int) bool { return i%5 == 2 }},
		"task":       {decisionlog.Filter{TaskID: "task-3"}, func(i int) bool { return i%7 == 3 }},
		"trace":      {decisionlog.Filter{TraceID: fmt.Sprintf("trace-%d", (n-1)/2)}, func(i int) bool { return i/2 == (n-1)/2 }},
		"tool call":  {decisionlog.Filter{ToolCallID: "call-4"}, func(i int) bool { return i == 4 }},
		"for user":   {decisionlog.Filter{OnBehalfOf: "user-0"}, func(i int) bool { return i%4 == 0 }},
		"credential": {decisionlog.Filter{CredentialID: "cred-5"}, func(i int) bool { return i%6 == 5 }},
		"two keys":   {decisionlog.Filter{Principal: `Agent::"agent-0"`, SessionID: "s-0"}, func(i int) bool { return i%15 == 0 }},
	}
}

// checkQueries asserts every indexQueries filter returns exactly its rows.
func checkQueries(t *testing.T, r *decisionlog.Reader, n int) {
	t.Helper()
	for name, q := range indexQueries(n) {
		q.f.Limit = n + 1
		got, err := r.Query(t.Context(), q.f)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var seqs, want []int64
		for _, e := range got {
			seqs = append(seqs, e.Seq)
		}
		for i := n - 1; i >= 0; i-- {
			if q.want(i) {
				want = append(want, int64(i+1))
			}
		}
		if !slices.Equal(seqs, want) {
			t.Errorf("%s: got seqs %v, want %v", name, seqs, want)
		}
	}
}

func openReader(t *testing.T, path string) *decisionlog.Reader {
	t.Helper()
	r, err := decisionlog.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func appendIndexed(t *testing.T, l *decisionlog.Log, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := l.Append(t.Context(), indexedDecision(i)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestIndex_QueriesAgreeWithTheLog: lookups by every indexed key give the
// same rows whether the index is complete, behind the log, missing, or
// belongs to another log, and a log that reopens rebuilds a wrong index.
func TestIndex_QueriesAgreeWithTheLog(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "d.db")
	l, err := decisionlog.Open(t.Context(), path, decisionlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 120
	appendIndexed(t, l, 0, n-10)
	// While it runs, rows the index has not reached are found by scanning.
	checkQueries(t, l.Reader, n-10)
	appendIndexed(t, l, n-10, n)
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}

	t.Run("complete", func(t *testing.T) {
		r := openReader(t, path)
		if seq, ok, err := r.IndexedThrough(t.Context()); err != nil || !ok || seq != n {
			t.Fatalf("indexed through %d (%v, %v), want %d after a clean close", seq, ok, err, n)
		}
		checkQueries(t, r, n)
		if st, err := r.Stats(t.Context()); err != nil || st.IndexedSeq != n || st.IndexBytes == 0 {
			t.Errorf("stats: %+v (%v), want the index's size and indexed_seq %d", st, err, n)
		}
	})

	t.Run("behind", func(t *testing.T) {
		// A row the index has never seen, written behind its back.
		db, err := sql.Open("sqlite3", path)
		if err != nil {
			t.Fatal(err)
		}
		e := indexedDecision(n)
		_, err = db.Exec(`INSERT INTO log(seq, kind, time, body, hash) VALUES (?, 'decision', 0, ?, x'00')`, n+1, string(e.Body))
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
		r := openReader(t, path)
		checkQueries(t, r, n+1)
		tamper(t, path, fmt.Sprintf(`DELETE FROM log WHERE seq = %d`, n+1))
	})

	t.Run("missing", func(t *testing.T) {
		saved, err := os.ReadFile(decisionlog.IndexPath(path))
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(decisionlog.IndexPath(path))
		r := openReader(t, path)
		if _, ok, _ := r.IndexedThrough(t.Context()); ok {
			t.Fatal("a reader claims an index that is not there")
		}
		checkQueries(t, r, n)
		r.Close()
		if err := os.WriteFile(decisionlog.IndexPath(path), saved, 0o600); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("another log's", func(t *testing.T) {
		other := filepath.Join(dir, "other.db")
		ol := open(t, other, decisionlog.Options{})
		appendIndexed(t, ol, 0, 5)
		ol.Close(t.Context())
		if err := copyFile(decisionlog.IndexPath(other), decisionlog.IndexPath(path)); err != nil {
			t.Fatal(err)
		}
		os.Remove(decisionlog.IndexPath(path) + "-wal")
		os.Remove(decisionlog.IndexPath(path) + "-shm")
		r := openReader(t, path)
		if _, ok, _ := r.IndexedThrough(t.Context()); ok {
			t.Fatal("a reader trusts the index of another log")
		}
		checkQueries(t, r, n)
		r.Close()

		// Reopening the log rebuilds it.
		l := open(t, path, decisionlog.Options{})
		if err := l.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		r = openReader(t, path)
		// tamper dropped the append-only triggers earlier: the writer
		// restored them and recorded one integrity row.
		if seq, ok, _ := r.IndexedThrough(t.Context()); !ok || seq != n+1 {
			t.Fatalf("after reopening, indexed through %d (%v), want %d", seq, ok, n+1)
		}
		checkQueries(t, r, n)
	})
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o600)
}

// TestKeyHash_IsFNV1a: the stored keys are FNV-1a over the field id and
// the value, as the comment promises anyone reading the index file.
func TestKeyHash_IsFNV1a(t *testing.T) {
	for _, v := range []string{"", "Agent::\"a\"", "s-1", "é"} {
		h := fnv.New64a()
		h.Write([]byte{4})
		h.Write([]byte(v))
		if got, want := decisionlog.KeyHash(4, v), int64(h.Sum64()); got != want {
			t.Errorf("%q: %x, want %x", v, got, want)
		}
	}
}

// TestIndex_UnreadableIsRebuilt: an index file SQLite cannot read does not
// stop the log; it is made anew and covers the log once caught up.
func TestIndex_UnreadableIsRebuilt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.db")
	l := open(t, path, decisionlog.Options{})
	appendIndexed(t, l, 0, 30)
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	os.Remove(decisionlog.IndexPath(path) + "-wal")
	os.Remove(decisionlog.IndexPath(path) + "-shm")
	if err := os.WriteFile(decisionlog.IndexPath(path), []byte("not a database, not even close to one: "+strings.Repeat("x", 200)), 0o600); err != nil {
		t.Fatal(err)
	}
	r := openReader(t, path)
	if _, ok, _ := r.IndexedThrough(t.Context()); ok {
		t.Fatal("a reader uses an unreadable index")
	}
	checkQueries(t, r, 30)
	r.Close()

	l = open(t, path, decisionlog.Options{})
	appendIndexed(t, l, 30, 40)
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	r = openReader(t, path)
	if seq, ok, err := r.IndexedThrough(t.Context()); !ok || seq != 40 || err != nil {
		t.Fatalf("after reopening: indexed through %d (%v, %v), want 40", seq, ok, err)
	}
	checkQueries(t, r, 40)
}
