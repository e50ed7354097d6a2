package decisionlog_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/agentpdp/agentpdp/decisionlog"
)

// mth is RFC 6962's Merkle Tree Hash of leaf hashes, computed the naive
// recursive way with transparency-dev/merkle's hasher: independent of
// x/mod's tlog and of the writer's frontier.
func mth(leaves [][]byte) []byte {
	if len(leaves) == 1 {
		return leaves[0]
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	return rfc6962.DefaultHasher.HashChildren(mth(leaves[:k]), mth(leaves[k:]))
}

// merkleRows reads the log's chain hashes and its merkle table.
func merkleRows(t *testing.T, path string) (chain [][]byte, stored map[int64][]byte) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT seq, hash FROM log ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var seq int64
		var h []byte
		must(t, rows.Scan(&seq, &h))
		if seq != int64(len(chain))+1 {
			t.Fatalf("row %d follows row %d", seq, len(chain))
		}
		chain = append(chain, h)
	}
	must(t, rows.Err())
	rows, err = db.Query(`SELECT leaf, hashes FROM merkle`)
	if err != nil {
		t.Fatal(err)
	}
	stored = map[int64][]byte{}
	for rows.Next() {
		var leaf int64
		var b []byte
		must(t, rows.Scan(&leaf, &b))
		stored[leaf] = b
	}
	must(t, rows.Err())
	return chain, stored
}

// Commits of many sizes (single rows, 3, 16, 17, 63 to 65, 130, and
// groups that lost a refused row) write, for each row, the merkle row an
// independent RFC 6962 computation expects: the leaf hash, then the root
// of every subtree the leaf completes. Roots at every size match too, and
// the per-row path (the backfill of a log without merkle rows) writes the
// very same bytes.
func TestMerkle_GroupCommitsWriteTheLeavesOfAnIndependentTree(t *testing.T) {
	priv, _ := newKey(t)
	path := filepath.Join(t.TempDir(), "d.db")
	ctx := t.Context()
	l, err := decisionlog.Open(ctx, path, decisionlog.Options{SigningKey: priv, CheckpointEvery: 50, MaxWait: 100 * time.Millisecond, MaxBatch: 512})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	group := func(k int) []*decisionlog.Entry {
		es := make([]*decisionlog.Entry, k)
		for i := range es {
			n++
			es[i] = decision(fmt.Sprintf("d-%d", n), "a", "allow")
		}
		return es
	}
	for _, k := range []int{1, 3, 16, 17, 1, 63, 64, 65, 130, 2} {
		if err := l.Append(ctx, group(k)...); err != nil {
			t.Fatal(err)
		}
	}
	// Requests that share commits with a refused one: the commit starts
	// over without it, and its leaves with it.
	var wg sync.WaitGroup
	refused := make(chan error, 3)
	for i := range 12 {
		g := group(1 + i%5)
		wg.Go(func() {
			if err := l.Append(ctx, g...); err != nil {
				t.Error(err)
			}
		})
		if i%4 == 1 {
			wg.Go(func() {
				refused <- l.Append(ctx, &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: json.RawMessage(`{"decision_id": not json`)})
			})
		}
	}
	wg.Wait()
	close(refused)
	for err := range refused {
		if !errors.Is(err, decisionlog.ErrRowRefused) {
			t.Errorf("malformed row: %v, want ErrRowRefused", err)
		}
	}
	if st := l.WriterStats(); st.Commits >= st.Entries {
		t.Fatalf("%d commits for %d rows: no commit held several", st.Commits, st.Entries)
	}
	must(t, l.Close(ctx))

	chain, stored := merkleRows(t, path)
	if len(chain) < n || len(stored) != len(chain) {
		t.Fatalf("%d rows (%d appended) and %d merkle rows", len(chain), n, len(stored))
	}
	leaves := make([][]byte, len(chain))
	for i, h := range chain {
		leaves[i] = rfc6962.DefaultHasher.HashLeaf(h)
	}
	for i := range leaves {
		// Leaf i completes the subtrees of 2, 4, … leaves ending at it
		// while i+1 is a multiple of their size.
		want := bytes.Clone(leaves[i])
		for size := 2; (i+1)%size == 0; size *= 2 {
			want = append(want, mth(leaves[i+1-size:i+1])...)
		}
		if !bytes.Equal(stored[int64(i)], want) {
			t.Fatalf("merkle row of leaf %d holds %x, want %x", i, stored[int64(i)], want)
		}
	}
	r := openReader(t, path)
	for size := int64(1); size <= int64(len(leaves)); size++ {
		root, err := r.TreeHash(ctx, size)
		if err != nil {
			t.Fatal(err)
		}
		if want := mth(leaves[:size]); !bytes.Equal(root[:], want) {
			t.Fatalf("root of size %d: %x, want %x", size, root, want)
		}
	}
	r.Close()

	// The per-row path: drop the merkle rows from leaf 5 on, and let Open
	// rebuild them one leaf at a time.
	db, err := sql.Open("sqlite3", "file:"+path)
	must(t, err)
	_, err = db.Exec(`DELETE FROM merkle WHERE leaf >= 5`)
	db.Close()
	must(t, err)
	l, err = decisionlog.Open(ctx, path, decisionlog.Options{SigningKey: priv})
	if err != nil {
		t.Fatal(err)
	}
	must(t, l.Close(context.Background()))
	_, rebuilt := merkleRows(t, path)
	for leaf, b := range stored {
		if !bytes.Equal(rebuilt[leaf], b) {
			t.Fatalf("leaf %d: the group commit wrote %x, the per-row path %x", leaf, b, rebuilt[leaf])
		}
	}
}
