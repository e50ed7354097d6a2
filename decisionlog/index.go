package decisionlog

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/agentpdp/agentpdp/pdp/wire"
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
const indexSchemaVersion = 2

// Keys are an entry's values for the provenance index and the log table's
// columns, given by whoever writes the entry so that neither the indexer
// nor SQLite need parse them back out of the body. Each must be what the
// body holds at its field's path.
//
// An entry without Keys costs more, and nothing else: SQLite reads its
// columns out of the body as it inserts the row (json_extract), and the
// indexer reads the row back for its keys.
type Keys struct {
	// The provenance index's keys (indexedFields: Principal at
	// wire.FieldPrincipal, …); "" where the body has none.
	Principal, SessionID, TaskID, TraceID, OnBehalfOf, CredentialID, ToolCallID string

	// The log table's columns (wire.IndexedColumns; tableColumns says
	// which is which): exactly what json_extract(body, path) gives, the
	// string at the path, or NULL (Valid false) where the body has no
	// value there, which is not the same as "". The writer stores them as
	// given; Verify fails a row whose column differs from its body, since
	// lookups by decision id, approval and shadow diff read the columns.
	DecisionID, Decision, ParentDecisionID, ApprovalID, ShadowDecision sql.NullString
}

// indexedFields are the keys in the index: the id hashed with the value,
// the record field that holds it, and where Keys has it. The ids are stored in the index: never reuse one.
var indexedFields = []struct {
	id    byte
	field wire.Field
	get   func(*Keys) string
}{
	{1, wire.FieldPrincipal, func(k *Keys) string { return k.Principal }},
	{2, wire.FieldSessionID, func(k *Keys) string { return k.SessionID }},
	{3, wire.FieldTaskID, func(k *Keys) string { return k.TaskID }},
	{4, wire.FieldTraceID, func(k *Keys) string { return k.TraceID }},
	{5, wire.FieldOnBehalfOf, func(k *Keys) string { return k.OnBehalfOf }},
	{6, wire.FieldCredentialID, func(k *Keys) string { return k.CredentialID }},
	{7, wire.FieldToolCallID, func(k *Keys) string { return k.ToolCallID }},
}

// IndexedFields are the record fields the provenance index holds, the
// ones Keys has.
func IndexedFields() []wire.Field {
	out := make([]wire.Field, len(indexedFields))
	for i, x := range indexedFields {
		out[i] = x.field
	}
	return out
}

// Get is k's value for the record field f, and false if the index does not
// hold f.
func (k *Keys) Get(f wire.Field) (string, bool) {
	for _, x := range indexedFields {
		if x.field == f {
			return x.get(k), true
		}
	}
	return "", false
}

// keyHash is what the index stores for a value of a field: 64 bits of
// FNV-1a over the field id and the value. Eight bytes instead of the value
// keep the index small; two values that share a hash are told apart by the
// check of every candidate row against its own column.
func keyHash(field byte, value string) int64 {
	const offset, prime = 14695981039346656037, 1099511628211 // FNV-1a, 64-bit
	h := uint64(offset)
	h = (h ^ uint64(field)) * prime
	for i := 0; i < len(value); i++ {
		h = (h ^ uint64(value[i])) * prime
	}
	return int64(h)
}

// indexKeyFor is the stored key for a filter on the record field f, and
// false if the index does not hold f.
func indexKeyFor(f wire.Field, value string) (int64, bool) {
	for _, x := range indexedFields {
		if x.field == f {
			return keyHash(x.id, value), true
		}
	}
	return 0, false
}

// IndexPath is where the provenance index of the log at path is kept.
func IndexPath(path string) string { return path + "-index" }

const indexSchema = `
	CREATE TABLE IF NOT EXISTS keys (
		k   INTEGER NOT NULL, -- keyHash(field, value)
		seq INTEGER NOT NULL,
		PRIMARY KEY (k, seq)
	) WITHOUT ROWID;
	CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value);`

// indexer keeps the index up to date with the log. One goroutine owns it
// from start until its context ends.
type indexer struct {
	logger *slog.Logger
	db     *sql.DB // the index, one connection
	log    *sql.DB // the log, read-only, of its own
	origin string

	batch   int           // most rows per index transaction
	every   time.Duration // how often it writes what it has when fewer are waiting
	items   chan []*Entry // committed entries, from the writer
	indexed atomic.Int64  // the last seq whose keys are in the index

	// Owned by run: keys of committed rows not yet in the index, in seq
	// order from indexed+1 to last.
	pending      []indexKey
	rows         int
	last         int64
	hash         []byte
	received     int       // commits offered since the last tick
	pruneChecked time.Time // when dropPruned last ran
}

// openIndexer opens or creates the index of the log at logPath, and empties
// it if it does not describe that log: another origin, another schema, or a
// seq it claims whose hash the log does not have. An index SQLite cannot
// read at all is deleted and made anew: it holds nothing the log does not.
func openIndexer(ctx context.Context, logPath, origin string, logger *slog.Logger) (*indexer, error) {
	x, err := tryOpenIndexer(ctx, logPath, origin, logger)
	if err == nil {
		return x, nil
	}
	path := IndexPath(logPath)
	logger.Warn("provenance index: unreadable; rebuilding it from the log", "path", path, "err", err)
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if rerr := os.Remove(p); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			return nil, errors.Join(err, rerr)
		}
	}
	return tryOpenIndexer(ctx, logPath, origin, logger)
}

func tryOpenIndexer(ctx context.Context, logPath, origin string, logger *slog.Logger) (*indexer, error) {
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
	db, err := sql.Open("sqlite3", dsn(path, "_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=5000&_txlock=immediate&_mutex=no"))
	if err != nil {
		log.Close()
		return nil, fmt.Errorf("open index %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	x := &indexer{logger: logger, db: db, log: log, origin: origin, batch: 8192, every: 250 * time.Millisecond, items: make(chan []*Entry, 1024)}
	if err := x.init(ctx); err != nil {
		x.close()
		return nil, fmt.Errorf("open index %s: %w", path, err)
	}
	return x, nil
}

func (x *indexer) init(ctx context.Context) error {
	if _, err := x.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value)`); err != nil {
		return err
	}
	ok, indexed, err := indexMatches(ctx, x.db, x.log, "")
	if err != nil {
		return err
	}
	if ok {
		x.indexed.Store(indexed)
		x.last = indexed
		return nil
	}
	// Start over: one transaction, so a reader sees the old index or an
	// empty one that claims nothing, never a part of either.
	tx, err := x.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DROP TABLE IF EXISTS keys; DROP TABLE meta;`+indexSchema); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES ('version', ?), ('origin', ?), ('indexed_seq', 0), ('indexed_hash', x'')`,
		indexSchemaVersion, x.origin); err != nil {
		return err
	}
	x.indexed.Store(0)
	x.last = 0
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

// offer hands the indexer the entries of a commit, in seq order. It never
// blocks the writer: if the indexer is that far behind, the entries are
// dropped and it reads those rows back from the log instead.
func (x *indexer) offer(es []*Entry) {
	select {
	case x.items <- es:
	default:
	}
}

// run indexes what the writer offers, writing the index every x.every or
// whenever a batch is waiting, until ctx ends; then it writes what it has
// and reads back what it was not given, so a clean stop leaves the index
// complete. Rows written before it started are read back first.
func (x *indexer) run(ctx context.Context) {
	x.catchUp(ctx)
	t := time.NewTicker(x.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case es := <-x.items:
					x.take(context.Background(), es)
					continue
				default:
				}
				break
			}
			x.catchUp(context.Background())
			return
		case es := <-x.items:
			x.received++
			x.take(ctx, es)
			if x.rows >= x.batch {
				x.flush(ctx)
			}
		case <-t.C:
			// Rows it was not given are read back once the writer is quiet:
			// while entries keep arriving, the log's newest rows are in
			// the queue, and reading them back would index them twice.
			if x.received == 0 {
				x.catchUp(ctx)
			} else {
				x.flush(ctx) // a failure is logged; what was pending is read back later
				// Retention prunes while the log is busy, too.
				if time.Since(x.pruneChecked) > time.Minute {
					x.warn(ctx, x.dropPruned(ctx))
				}
			}
			x.received = 0
		}
	}
}

// take queues the keys of committed entries. Entries it cannot take from
// memory (a gap left by dropped offers, or an entry without Keys) are read
// back from the log.
func (x *indexer) take(ctx context.Context, es []*Entry) {
	for i, e := range es {
		if e.Seq <= x.last {
			continue // already read back
		}
		if e.Seq != x.last+1 || e.Keys == nil {
			x.catchUp(ctx)
			if len(es) > i+1 {
				x.take(ctx, es[i+1:])
			}
			return
		}
		for _, f := range indexedFields {
			if v := f.get(e.Keys); v != "" {
				x.pending = append(x.pending, indexKey{keyHash(f.id, v), e.Seq})
			}
		}
		x.rows++
		x.last, x.hash = e.Seq, e.Hash
	}
}

// catchUp writes what is pending, then reads back and indexes the rows the
// log holds beyond it, a batch at a time.
func (x *indexer) catchUp(ctx context.Context) {
	for ctx.Err() == nil {
		if err := x.flush(ctx); err != nil {
			return
		}
		n, err := x.read(ctx)
		if err != nil {
			x.warn(ctx, err)
			return
		}
		if n == 0 {
			x.warn(ctx, x.dropPruned(ctx))
			return
		}
	}
}

func (x *indexer) warn(ctx context.Context, err error) {
	if err != nil && ctx.Err() == nil {
		x.logger.Warn("provenance index: will retry", "after_seq", x.indexed.Load(), "err", err)
	}
}

// flush writes the pending keys in one transaction, with the claim that the
// index now covers the log up to x.last.
func (x *indexer) flush(ctx context.Context) error {
	if x.last == x.indexed.Load() {
		return nil
	}
	err := x.write(ctx)
	if err != nil {
		// Forget what was pending: reading it back is always possible.
		x.last, x.hash = x.indexed.Load(), nil
		x.warn(ctx, err)
	} else {
		x.indexed.Store(x.last)
	}
	x.pending, x.rows = x.pending[:0], 0
	return err
}

func (x *indexer) write(ctx context.Context) error {
	// In key order, the inserts walk the B-tree once from left to right.
	slices.SortFunc(x.pending, func(a, b indexKey) int {
		return cmp.Or(cmp.Compare(a.k, b.k), cmp.Compare(a.seq, b.seq))
	})
	tx, err := x.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// Many rows per statement: each call through database/sql and cgo
	// costs more than the insert of one key.
	const perStmt = 256
	stmt := func(n int) string {
		return `INSERT OR IGNORE INTO keys(k, seq) VALUES ` + strings.TrimSuffix(strings.Repeat("(?, ?), ", n), ", ")
	}
	full, err := tx.PrepareContext(ctx, stmt(perStmt))
	if err != nil {
		return err
	}
	defer full.Close()
	args := make([]any, 0, 2*perStmt)
	for keys := x.pending; len(keys) > 0; {
		n := min(len(keys), perStmt)
		args = args[:0]
		for _, k := range keys[:n] {
			args = append(args, k.k, k.seq)
		}
		var err error
		if n == perStmt {
			_, err = full.ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, stmt(n), args...)
		}
		if err != nil {
			return fmt.Errorf("write %d keys: %w", n, err)
		}
		keys = keys[n:]
	}
	if _, err := tx.ExecContext(ctx, `UPDATE meta SET value = CASE key WHEN 'indexed_seq' THEN ? ELSE ? END WHERE key IN ('indexed_seq', 'indexed_hash')`, x.last, x.hash); err != nil {
		return err
	}
	return tx.Commit()
}

type indexKey struct {
	k   int64
	seq int64
}

// read queues the keys of up to x.batch rows after x.last, read back from
// the log, and writes them. Its read transaction ends before the index is
// written: a long reader would keep the log's WAL from being recycled.
func (x *indexer) read(ctx context.Context) (int, error) {
	cols := "seq, hash"
	for _, f := range indexedFields {
		cols += ", " + fieldSQL(f.field)
	}
	rows, err := x.log.QueryContext(ctx, `SELECT `+cols+` FROM log WHERE seq > ? ORDER BY seq LIMIT ?`, x.last, x.batch)
	if err != nil {
		return 0, fmt.Errorf("read log: %w", err)
	}
	defer rows.Close()
	var (
		n    int
		seq  int64
		hash []byte
		vals = make([]sql.NullString, len(indexedFields))
		dest = make([]any, 2+len(indexedFields))
	)
	dest[0], dest[1] = &seq, &hash
	for i := range vals {
		dest[2+i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return 0, fmt.Errorf("read log: %w", err)
		}
		for i, v := range vals {
			if v.Valid && v.String != "" {
				x.pending = append(x.pending, indexKey{keyHash(indexedFields[i].id, v.String), seq})
			}
		}
		x.rows++
		x.last, x.hash = seq, hash
		n++
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("read log: %w", err)
	}
	rows.Close()
	return n, x.flush(ctx)
}

// dropPruned deletes the keys of rows retention has deleted from the log.
// It runs when the index has caught up, and costs a pass over the index only
// when the log's first seq has moved.
func (x *indexer) dropPruned(ctx context.Context) error {
	x.pruneChecked = time.Now()
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
