package decisionlog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/bits"

	"golang.org/x/mod/sumdb/tlog"
)

// The Merkle tree over the log (RFC 6962, as golang.org/x/mod/sumdb/tlog
// computes it) has one leaf per row, in seq order: leaf index seq-1, leaf
// bytes the row's 32-byte chain hash. Its stored hashes (every complete
// subtree's hash, tlog's numbering) live in the merkle table, one row per
// leaf holding the hashes that adding that leaf completes, level 0 first:
// written in the transaction that writes the row, never pruned, so that a
// row retention keeps can still be proven against any checkpoint and a
// checkpoint pruned away can still be proven a prefix of a later one.

// querier is what reading stored hashes needs: a *sql.DB or a *sql.Tx.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// hashReader reads stored hashes from overlays of hashes not yet committed
// (searched first, in order), then from the merkle table.
type hashReader struct {
	ctx context.Context
	q   querier
	mem []map[int64]tlog.Hash
}

func (r *hashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
next:
	for i, x := range indexes {
		for _, m := range r.mem {
			if h, ok := m[x]; ok {
				out[i] = h
				continue next
			}
		}
		// Node (level, k) is complete once leaf ((k+1)<<level)-1 is added,
		// and is stored with it at offset level.
		level, k := tlog.SplitStoredHashIndex(x)
		leaf := (k+1)<<level - 1
		var b []byte
		err := r.q.QueryRowContext(r.ctx, `SELECT hashes FROM merkle WHERE leaf = ?`, leaf).Scan(&b)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("merkle tree: the hashes stored with leaf %d (seq %d) are missing", leaf, leaf+1)
		}
		if err != nil {
			return nil, fmt.Errorf("merkle tree: read leaf %d: %w", leaf, err)
		}
		if len(b) < (level+1)*tlog.HashSize {
			return nil, fmt.Errorf("merkle tree: leaf %d (seq %d) holds %d bytes, want at least %d", leaf, leaf+1, len(b), (level+1)*tlog.HashSize)
		}
		copy(out[i][:], b[level*tlog.HashSize:])
	}
	return out, nil
}

// frontierIndexes are the stored-hash indexes of the compact range of a
// tree of size n: the perfect subtrees, largest first, whose hashes are all
// that adding the next leaf or computing the root needs.
func frontierIndexes(n int64) []int64 {
	out := make([]int64, 0, bits.OnesCount64(uint64(n)))
	for level := 62; level >= 0; level-- {
		if n>>level&1 == 1 {
			out = append(out, tlog.StoredHashIndex(level, n>>level-1))
		}
	}
	return out
}

// merkleLeaf computes the hashes that adding the row with seq and chain
// hash completes, reading the frontier from r, and returns them with their
// stored indexes and the bytes the merkle table keeps for the leaf.
func merkleLeaf(seq int64, chainHash []byte, r tlog.HashReader) (first int64, hashes []tlog.Hash, blob []byte, err error) {
	hashes, err = tlog.StoredHashes(seq-1, chainHash, r)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("merkle tree: leaf for seq %d: %w", seq, err)
	}
	blob = make([]byte, 0, len(hashes)*tlog.HashSize)
	for _, h := range hashes {
		blob = append(blob, h[:]...)
	}
	return tlog.StoredHashIndex(0, seq-1), hashes, blob, nil
}

// trimFrontier keeps from m only the hashes of the frontier of size n.
func trimFrontier(m map[int64]tlog.Hash, n int64) map[int64]tlog.Hash {
	out := make(map[int64]tlog.Hash, 64)
	for _, x := range frontierIndexes(n) {
		if h, ok := m[x]; ok {
			out[x] = h
		}
	}
	return out
}

// syncMerkle brings the merkle table in line with the log's head (l.seq)
// before the writer starts: it adds the leaves of rows written before the
// table existed, drops leaves past the head (a tail accepted as cut), and
// loads the frontier.
func (l *Log) syncMerkle(ctx context.Context) error {
	var last int64
	if err := l.db.QueryRowContext(ctx, `SELECT coalesce(max(leaf), -1) FROM merkle`).Scan(&last); err != nil {
		return fmt.Errorf("merkle tree: %w", err)
	}
	if last+1 > l.seq {
		if _, err := l.db.ExecContext(ctx, `DELETE FROM merkle WHERE leaf >= ?`, l.seq); err != nil {
			return fmt.Errorf("merkle tree: drop leaves past the head: %w", err)
		}
		last = l.seq - 1
	}
	if last+1 < l.seq {
		if err := l.backfillMerkle(ctx, last+1); err != nil {
			return err
		}
	}
	hr := &hashReader{ctx: ctx, q: l.db}
	idx := frontierIndexes(l.seq)
	hs, err := hr.ReadHashes(idx)
	if err != nil {
		return err
	}
	l.frontier = make(map[int64]tlog.Hash, len(idx))
	for i, x := range idx {
		l.frontier[x] = hs[i]
	}
	return nil
}

// backfillMerkle adds the leaves from leaf index `from` to the head, for a
// log written before the Merkle tree was kept. The rows must all be there.
func (l *Log) backfillMerkle(ctx context.Context, from int64) error {
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("merkle tree: %w", err)
	}
	defer tx.Rollback()
	frontier := map[int64]tlog.Hash{}
	if from > 0 {
		hs, err := (&hashReader{ctx: ctx, q: tx}).ReadHashes(frontierIndexes(from))
		if err != nil {
			return err
		}
		for i, x := range frontierIndexes(from) {
			frontier[x] = hs[i]
		}
	}
	rows, err := tx.QueryContext(ctx, `SELECT seq, hash FROM log WHERE seq > ? ORDER BY seq`, from)
	if err != nil {
		return fmt.Errorf("merkle tree: %w", err)
	}
	defer rows.Close()
	want := from + 1
	for rows.Next() {
		var seq int64
		var hash []byte
		if err := rows.Scan(&seq, &hash); err != nil {
			return fmt.Errorf("merkle tree: %w", err)
		}
		if seq != want {
			return fmt.Errorf("merkle tree: cannot build the tree of a log without row %d (pruned before Merkle checkpoints existed?): export it and start a new log", want)
		}
		want++
		first, hs, blob, err := merkleLeaf(seq, hash, &hashReader{ctx: ctx, q: tx, mem: []map[int64]tlog.Hash{frontier}})
		if err != nil {
			return err
		}
		for i, h := range hs {
			frontier[first+int64(i)] = h
		}
		frontier = trimFrontier(frontier, seq)
		// SQLite lets one connection insert while it steps a query.
		if _, err := tx.ExecContext(ctx, `INSERT INTO merkle(leaf, hashes) VALUES (?, ?)`, seq-1, blob); err != nil {
			return fmt.Errorf("merkle tree: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("merkle tree: %w", err)
	}
	rows.Close()
	return tx.Commit()
}

// TreeHash is the root hash of the tree of the first size rows, from the
// stored hashes.
func (r *Reader) TreeHash(ctx context.Context, size int64) (tlog.Hash, error) {
	return tlog.TreeHash(size, &hashReader{ctx: ctx, q: r.db})
}
