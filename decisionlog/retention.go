package decisionlog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Cursors records how far each sink has shipped. It writes its own small
// table, so a shipper in another process needs no more than a read-only view
// of the log and this.
type Cursors struct {
	db *sql.DB
}

// OpenCursors opens the cursor table of the log at path.
func OpenCursors(path string) (*Cursors, error) {
	db, err := sql.Open("sqlite3", dsn(path, "_busy_timeout=10000&_txlock=immediate"))
	if err != nil {
		return nil, fmt.Errorf("open ship cursors %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open ship cursors %s: %w", path, err)
	}
	return &Cursors{db: db}, nil
}

// Close closes the connection.
func (c *Cursors) Close() error { return c.db.Close() }

// Get is the last seq sink acknowledged, 0 if none.
func (c *Cursors) Get(ctx context.Context, sink string) (int64, error) {
	var seq int64
	err := c.db.QueryRowContext(ctx, `SELECT seq FROM ship_cursors WHERE sink = ?`, sink).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("ship cursor %s: %w", sink, err)
	}
	return seq, nil
}

// Advance moves sink's cursor to seq. It never moves a cursor back.
func (c *Cursors) Advance(ctx context.Context, sink string, seq int64) error {
	_, err := c.db.ExecContext(ctx, `INSERT INTO ship_cursors(sink, seq, updated) VALUES (?, ?, ?)
		ON CONFLICT(sink) DO UPDATE SET seq = max(seq, excluded.seq), updated = excluded.updated`, sink, seq, time.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("advance ship cursor %s to %d: %w", sink, seq, err)
	}
	return nil
}

// All returns every sink's cursor.
func (r *Reader) Cursors(ctx context.Context) (map[string]int64, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT sink, seq FROM ship_cursors`)
	if err != nil {
		return nil, fmt.Errorf("ship cursors: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var sink string
		var seq int64
		if err := rows.Scan(&sink, &seq); err != nil {
			return nil, err
		}
		out[sink] = seq
	}
	return out, rows.Err()
}

// ErrNoAnchor means nothing can be pruned while keeping the log verifiable:
// no signed checkpoint lies within what may be deleted.
var ErrNoAnchor = errors.New("no signed checkpoint within the rows that may be pruned")

// PruneResult says what Prune removed.
type PruneResult struct {
	Deleted int64 `json:"deleted"`
	Anchor  int64 `json:"anchor_seq"` // the first row kept: a checkpoint
}

// Prune deletes the oldest rows, all with seq ≤ upTo at most, stopping just
// before a checkpoint row: that checkpoint signs the hash of the last row
// deleted, so verification continues from it (the retained anchor) and a
// forged start cannot be slipped in. Callers decide upTo: old enough, and
// shipped by every sink. It runs on the writer's connection, between
// commits, and lifts the append-only guard only inside its transaction.
func (l *Log) Prune(ctx context.Context, upTo int64) (PruneResult, error) {
	return prune(ctx, l.db, upTo)
}

// PruneFile prunes the log at path from another process than the one
// writing it, as Log.Prune does; SQLite serialises it with the writer.
func PruneFile(ctx context.Context, path string, upTo int64) (PruneResult, error) {
	db, err := sql.Open("sqlite3", dsn(path, "_busy_timeout=10000&_txlock=immediate"))
	if err != nil {
		return PruneResult{}, fmt.Errorf("prune %s: %w", path, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	return prune(ctx, db, upTo)
}

func prune(ctx context.Context, db *sql.DB, upTo int64) (PruneResult, error) {
	var res PruneResult
	err := db.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM log WHERE kind = 'checkpoint' AND seq - 1 <= ?`, upTo).Scan(&res.Anchor)
	if err != nil {
		return res, fmt.Errorf("prune: %w", err)
	}
	if res.Anchor == 0 {
		return res, fmt.Errorf("prune up to seq %d: %w", upTo, ErrNoAnchor)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return res, fmt.Errorf("prune: %w", err)
	}
	defer tx.Rollback()
	stmts := []string{
		`DROP TRIGGER log_no_delete`,
		`DELETE FROM log WHERE seq < ?`,
		`CREATE TRIGGER log_no_delete BEFORE DELETE ON log BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END`,
	}
	for i, s := range stmts {
		var r sql.Result
		if i == 1 {
			r, err = tx.ExecContext(ctx, s, res.Anchor)
		} else {
			_, err = tx.ExecContext(ctx, s)
		}
		if err != nil {
			return res, fmt.Errorf("prune: %w", err)
		}
		if r != nil {
			res.Deleted, _ = r.RowsAffected()
		}
	}
	if err := tx.Commit(); err != nil {
		return res, fmt.Errorf("prune: %w", err)
	}
	return res, nil
}

// PruneBound is the highest seq retention allows deleting: rows older than
// maxAge (if set) or beyond the newest maxRows (if set), and shipped by every
// sink named. 0 means nothing.
func (r *Reader) PruneBound(ctx context.Context, maxAge time.Duration, maxRows int64, sinks []string, now time.Time) (int64, error) {
	last, err := r.LastSeq(ctx)
	if err != nil {
		return 0, fmt.Errorf("retention: %w", err)
	}
	var bound int64
	if maxAge > 0 {
		if err := r.db.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM log WHERE time < ?`, now.Add(-maxAge).UnixNano()).Scan(&bound); err != nil {
			return 0, fmt.Errorf("retention: %w", err)
		}
	}
	if maxRows > 0 && last-maxRows > bound {
		bound = last - maxRows
	}
	cursors, err := r.Cursors(ctx)
	if err != nil {
		return 0, err
	}
	for _, s := range sinks {
		bound = min(bound, cursors[s]) // a sink that shipped nothing holds everything
	}
	return max(bound, 0), nil
}
