package decisionlog

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"
)

// The provenance index.
//
// Reviewers look decisions up by principal, session, task, trace, the user
// an agent acts for, credential and tool call. Indexed on the log table
// itself, each of those keys lands on a different B-tree page in every
// commit (a trace id is random; a principal has its own run of seqs), so a
// commit of a few dozen rows rewrote a few hundred pages and the single
// writer spent more time on indexes than on the rows: measured 54 µs of CPU
// per row with them, 21 µs without, on batches of 15.
//
// So those keys live in a second database, <db>-index, that a goroutine of
// its own fills from the committed log in large batches, after the answer
// and outside the writer's lock. It is derived data: it is not part of the
// chain, it is rebuilt when it is missing or does not match the log, and a
// query treats it only as a hint: rows it has not reached yet are scanned,
// and every candidate is checked against the row itself.

// indexSchemaVersion changes whenever what the index holds changes; an
// index of another version is rebuilt.
const indexSchemaVersion = 1

// indexedFields are the keys in the index: the id stored in it and the
// generated column of the log it copies.
var indexedFields = []struct {
	id  int
	col string
}{
	{1, "principal"},
	{2, "session_id"},
	{3, "task_id"},
	{4, "trace_id"},
	{5, "on_behalf_of"},
	{6, "credential_id"},
	{7, "tool_call_id"},
}

func indexedField(col string) (int, bool) {
	for _, f := range indexedFields {
		if f.col == col {
			return f.id, true
		}
	}
	return 0, false
}

// IndexPath is where the provenance index of the log at path is kept.
func IndexPath(path string) string { return path + "-index" }

const indexSchema = `
	CREATE TABLE IF NOT EXISTS keys (
		field INTEGER NOT NULL,
		value TEXT    NOT NULL,
		seq   INTEGER NOT NULL,
		PRIMARY KEY (field, value, seq)
	) WITHOUT ROWID;
	CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value);`

// indexer keeps the index up to date with the log. One goroutine owns it
// from start until its context ends.
type indexer struct {
	db     *sql.DB // the index, one connection
	log    *sql.DB // the log, read-only, of its own
	origin string

	batch int           // most log rows read per index transaction
	every time.Duration // how often it catches up when fewer are waiting
	wake  chan struct{} // the writer's hint that a batch is waiting

	indexed atomic.Int64 // the last seq whose keys are in the index
}

// openIndexer opens or creates the index of the log at logPath, and empties
// it if it does not describe that log: another origin, another schema, or a
// seq it claims whose hash the log does not have.
func openIndexer(ctx context.Context, logPath, origin string) (*indexer, error) {
	path := IndexPath(logPath)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open index: %w", err)
	}
	f.Close()
	log, err := sql.Open("sqlite3", dsn(logPath, "mode=ro&_busy_timeout=5000&_query_only=1"))
	if err != nil {
		return nil, fmt.Errorf("open index: %w", err)
	}
	// The index is rebuilt from the log, so it need not survive power loss:
	// NORMAL keeps it consistent after a crash without an fsync per batch.
	db, err := sql.Open("sqlite3", dsn(path, "_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=5000&_txlock=immediate"))
	if err != nil {
		log.Close()
		return nil, fmt.Errorf("open index %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	x := &indexer{db: db, log: log, origin: origin, batch: 8192, every: 500 * time.Millisecond, wake: make(chan struct{}, 1)}
	if err := x.init(ctx); err != nil {
		x.close()
		return nil, fmt.Errorf("open index %s: %w", path, err)
	}
	return x, nil
}

func (x *indexer) init(ctx context.Context) error {
	if _, err := x.db.ExecContext(ctx, indexSchema); err != nil {
		return err
	}
	ok, indexed, err := indexMatches(ctx, x.db, x.log, "")
	if err != nil {
		return err
	}
	if ok {
		x.indexed.Store(indexed)
		return nil
	}
	// Start over: one transaction, so a reader sees the old index or an
	// empty one that claims nothing, never a part of either.
	tx, err := x.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM keys; DELETE FROM meta`); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES ('version', ?), ('origin', ?), ('indexed_seq', 0), ('indexed_hash', x'')`,
		indexSchemaVersion, x.origin); err != nil {
		return err
	}
	x.indexed.Store(0)
	return tx.Commit()
}

// indexMatches reports whether the index in idx describes the log in log,
// and up to which seq. prefix qualifies the index's tables ("idx." when it
// is attached to log's connection, "" when idx is its own).
func indexMatches(ctx context.Context, idx, log *sql.DB, prefix string) (bool, int64, error) {
	var (
		version  sql.NullInt64
		origin   sql.NullString
		indexed  sql.NullInt64
		hash     []byte
		logOrig  string
		haveHash []byte
	)
	err := idx.QueryRowContext(ctx, `SELECT
		(SELECT value FROM `+prefix+`meta WHERE key = 'version'),
		(SELECT value FROM `+prefix+`meta WHERE key = 'origin'),
		(SELECT value FROM `+prefix+`meta WHERE key = 'indexed_seq'),
		(SELECT value FROM `+prefix+`meta WHERE key = 'indexed_hash')`).Scan(&version, &origin, &indexed, &hash)
	if err != nil {
		return false, 0, fmt.Errorf("read index meta: %w", err)
	}
	if version.Int64 != indexSchemaVersion || !indexed.Valid {
		return false, 0, nil
	}
	if err := log.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'origin'`).Scan(&logOrig); err != nil {
		return false, 0, fmt.Errorf("read origin: %w", err)
	}
	if origin.String != logOrig {
		return false, 0, nil
	}
	if indexed.Int64 == 0 {
		return true, 0, nil
	}
	err = log.QueryRowContext(ctx, `SELECT hash FROM log WHERE seq = ?`, indexed.Int64).Scan(&haveHash)
	if errors.Is(err, sql.ErrNoRows) {
		// Pruned away (the index still holds the rows after it) or never
		// written (the log was restored from an older copy): only the
		// latter makes the index wrong.
		var last int64
		if err := log.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM log`).Scan(&last); err != nil {
			return false, 0, fmt.Errorf("read log head: %w", err)
		}
		return last >= indexed.Int64, indexed.Int64, nil
	}
	if err != nil {
		return false, 0, fmt.Errorf("read log row %d: %w", indexed.Int64, err)
	}
	return bytes.Equal(haveHash, hash), indexed.Int64, nil
}

// notify tells the indexer that rows were committed up to seq; it wakes
// early only when a whole batch is waiting, since small batches would give
// back what the index saves.
func (x *indexer) notify(seq int64) {
	if seq-x.indexed.Load() >= int64(x.batch) {
		select {
		case x.wake <- struct{}{}:
		default:
		}
	}
}

// run catches up every x.every, or sooner when woken, until ctx ends, and
// then once more so that a clean stop leaves the index complete.
func (x *indexer) run(ctx context.Context) {
	t := time.NewTicker(x.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			x.catchUp(context.Background())
			return
		case <-t.C:
		case <-x.wake:
		}
		x.catchUp(ctx)
	}
}

func (x *indexer) catchUp(ctx context.Context) {
	for ctx.Err() == nil {
		n, err := x.step(ctx)
		if err != nil {
			if ctx.Err() == nil {
				slog.Warn("provenance index: will retry", "after_seq", x.indexed.Load(), "err", err)
			}
			return
		}
		if n < x.batch {
			if err := x.dropPruned(ctx); err != nil && ctx.Err() == nil {
				slog.Warn("provenance index: will retry", "err", err)
			}
			return
		}
	}
}

// step indexes up to x.batch rows after x.indexed in one transaction and
// returns how many it read.
func (x *indexer) step(ctx context.Context) (int, error) {
	keys, n, last, hash, err := x.read(ctx)
	if err != nil || n == 0 {
		return 0, err
	}
	tx, err := x.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	ins, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO keys(field, value, seq) VALUES (?, ?, ?)`)
	if err != nil {
		return 0, err
	}
	defer ins.Close()
	for _, k := range keys {
		if _, err := ins.ExecContext(ctx, k.field, k.value, k.seq); err != nil {
			return 0, fmt.Errorf("index seq %d: %w", k.seq, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE meta SET value = CASE key WHEN 'indexed_seq' THEN ? ELSE ? END WHERE key IN ('indexed_seq', 'indexed_hash')`, last, hash); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	x.indexed.Store(last)
	return n, nil
}

type indexKey struct {
	field int
	value string
	seq   int64
}

// read collects the keys of up to x.batch rows after x.indexed, sorted as
// the index stores them, and ends its read transaction before the index is
// written: a long reader would keep the log's WAL from being recycled.
func (x *indexer) read(ctx context.Context) (keys []indexKey, n int, last int64, hash []byte, err error) {
	cols := "seq, hash"
	for _, f := range indexedFields {
		cols += ", " + f.col
	}
	rows, err := x.log.QueryContext(ctx, `SELECT `+cols+` FROM log WHERE seq > ? ORDER BY seq LIMIT ?`, x.indexed.Load(), x.batch)
	if err != nil {
		return nil, 0, 0, nil, fmt.Errorf("read log: %w", err)
	}
	defer rows.Close()
	vals := make([]sql.NullString, len(indexedFields))
	dest := make([]any, 2+len(indexedFields))
	dest[0], dest[1] = &last, &hash
	for i := range vals {
		dest[2+i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, 0, 0, nil, fmt.Errorf("read log: %w", err)
		}
		for i, v := range vals {
			if v.Valid && v.String != "" {
				keys = append(keys, indexKey{indexedFields[i].id, v.String, last})
			}
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return nil, 0, 0, nil, fmt.Errorf("read log: %w", err)
	}
	// In key order, the inserts walk the B-tree once from left to right.
	slices.SortFunc(keys, func(a, b indexKey) int {
		return cmp.Or(cmp.Compare(a.field, b.field), strings.Compare(a.value, b.value), cmp.Compare(a.seq, b.seq))
	})
	return keys, n, last, hash, nil
}

// dropPruned deletes the keys of rows retention has deleted from the log.
// It runs when the index has caught up, and costs a pass over the index only
// when the log's first seq has moved.
func (x *indexer) dropPruned(ctx context.Context) error {
	var first int64
	if err := x.log.QueryRowContext(ctx, `SELECT coalesce(min(seq), 0) FROM log`).Scan(&first); err != nil {
		return fmt.Errorf("read log start: %w", err)
	}
	tx, err := x.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var done sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'pruned_below'`).Scan(&done); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if first <= done.Int64 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM keys WHERE seq < ?`, first); err != nil {
		return fmt.Errorf("drop pruned keys: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO meta(key, value) VALUES ('pruned_below', ?)`, first); err != nil {
		return err
	}
	return tx.Commit()
}

func (x *indexer) close() error { return errors.Join(x.db.Close(), x.log.Close()) }

// connector opens connections to one database and runs hook on each:
// ATTACH and some PRAGMAs hold per connection, and database/sql opens
// connections whenever it needs them.
type connector struct {
	drv *sqlite3.SQLiteDriver
	dsn string
}

func openDB(dsn string, hook func(*sqlite3.SQLiteConn) error) *sql.DB {
	return sql.OpenDB(&connector{drv: &sqlite3.SQLiteDriver{ConnectHook: hook}, dsn: dsn})
}

func (c *connector) Connect(context.Context) (driver.Conn, error) { return c.drv.Open(c.dsn) }
func (c *connector) Driver() driver.Driver                        { return c.drv }
