package decisionlog

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/google/uuid"
	"github.com/mattn/go-sqlite3"
	"golang.org/x/mod/sumdb/tlog"
)

// Durability is SQLite's synchronous setting for the log.
type Durability string

const (
	// DurabilityFull fsyncs the WAL on every commit: an answered decision
	// survives power loss. The default.
	DurabilityFull Durability = "full"
	// DurabilityNormal fsyncs only at checkpoints: an answered decision
	// survives a crash of the daemon but not of the machine.
	DurabilityNormal Durability = "normal"
)

// Options tune a Log. The zero value is the safe default, without signed
// checkpoints.
type Options struct {
	Durability Durability    // default DurabilityFull
	MaxBatch   int           // most entries in one commit; default 512
	MaxWait    time.Duration // how long every commit waits for more entries; default 0 (never)
	// Under load, when the commit before held at least GroupMin entries
	// (default 8), a commit waits up to GroupWait (default 1ms; negative
	// never) until it holds as many as that one did and no entry announced
	// with Expect is still on its way. Callers then queue anyway, and each
	// fsync spared is CPU the daemon gets back. Callers one at a time never
	// wait; the first after a burst may, once.
	GroupWait time.Duration
	GroupMin  int

	// SigningKey, if set, signs a checkpoint row every CheckpointEvery rows
	// (default 1000), every CheckpointInterval (default 1m) when rows were
	// written since the last, and at Close.
	SigningKey         ed25519.PrivateKey
	CheckpointEvery    int
	CheckpointInterval time.Duration

	// Origin names the log in its checkpoints and shipped rows. It is set
	// when the log is created (default: a random id) and kept in the
	// database; opening a log with another origin fails.
	Origin string
	// AcceptTail lets Open continue a log whose tail this writer did not
	// leave there (see the tail state file), recording an integrity row
	// that says what was found. Without it Open refuses such a log.
	AcceptTail bool

	// OnCommit, if set, is told of every commit the writer attempts: how
	// many entries, how long it took, and its error. It runs on the writer
	// goroutine, so it must be quick (a metrics observation).
	OnCommit func(entries int, took time.Duration, err error)
	// Logger receives what the log reports of itself (a failed
	// checkpoint, an index rebuild, restored triggers); default: discarded.
	Logger *slog.Logger

	// schema, if not 0, is how many migrations Open applies: the tests
	// make an old log with it (OpenAtSchema).
	schema int
}

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("decision log is closed")

// Log is the writable decision log. One goroutine owns the write connection;
// Append hands it entries and waits for their commit.
type Log struct {
	*Reader

	path   string
	opts   Options
	logger *slog.Logger // opts.Logger, or a discarding one
	db     *sql.DB
	origin string
	// insert writes a row with the columns its Keys give; insertRead one
	// whose columns SQLite reads from its body (an entry without Keys, or
	// any entry while the table's columns are generated: the tests' logs
	// of a schema before migration 9).
	insert, insertRead *sql.Stmt
	generated          bool

	mu     sync.RWMutex // guards closed and sends on reqs against Close
	closed bool
	reqs   chan *appendReq
	done   chan struct{}

	lock      *os.File   // the writer's flock, held until Close
	state     *stateFile // nil without a signing key
	signer    *signer
	leafIns   []*sql.Stmt // leafIns[i] inserts leafChunks[i] merkle rows
	startRows []*Entry    // integrity rows Open appends once the writer runs

	// Owned by the writer goroutine after Open returns.
	seq     int64
	head    []byte
	since   int64    // rows written after the last checkpoint
	last    int      // entries in the last commit
	tree    frontier // the Merkle tree's frontier at seq
	work    frontier // the frontier as the commit in progress extends it
	leaves  leafBatch
	foreign error // set when the log's tail changed under the writer: it then writes nothing more

	commits, committed, failures atomic.Uint64
	expected                     atomic.Int64  // entries announced by Expect, not yet appended
	quiet                        chan struct{} // expected fell to zero

	// The provenance index (see index.go); nil if it could not be opened,
	// in which case queries scan.
	index     *indexer
	stopIndex context.CancelFunc
	indexDone chan struct{}

	// The checkpointer copies the WAL into the database off the writer's
	// path; ckptWake says the writer committed, and closing it stops it.
	ckptDB   *sql.DB
	ckptWake chan struct{}
	ckptDone chan struct{}
}

// WriterStats counts the writer's work since Open.
type WriterStats struct {
	Commits  uint64 `json:"commits"`  // transactions committed
	Entries  uint64 `json:"entries"`  // entries they held
	Failures uint64 `json:"failures"` // batches that failed and were rolled back
}

// WriterStats reports commits so far; Entries/Commits is the mean group size.
func (l *Log) WriterStats() WriterStats {
	return WriterStats{Commits: l.commits.Load(), Entries: l.committed.Load(), Failures: l.failures.Load()}
}

type appendReq struct {
	entries []*Entry
	result  chan error // buffered: the writer never blocks on a caller that gave up
	refused error      // why SQLite refused one of its rows; the commit went on without it
}

// ErrRowRefused wraps SQLite's refusal of one row for its content (a body
// its JSON functions cannot read, say): the entries of that Append are not
// written, and those that shared its commit are.
var ErrRowRefused = errors.New("decision log refused the row")

// rowError reports whether err is SQLite refusing one row for what it
// holds, rather than the database failing: only then can the commit go on
// without it.
func rowError(err error) bool {
	var se sqlite3.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code {
	case sqlite3.ErrError, sqlite3.ErrTooBig, sqlite3.ErrMismatch, sqlite3.ErrRange:
		return true
	case sqlite3.ErrConstraint:
		// A CHECK on the row's content; a UNIQUE seq means another writer,
		// which the commit's failure handling catches.
		return se.ExtendedCode == sqlite3.ErrConstraintCheck
	}
	return false
}

// Open opens or creates the log at path (created mode 0600), applies
// migrations and starts the writer.
func Open(ctx context.Context, path string, opts Options) (*Log, error) {
	if opts.Durability == "" {
		opts.Durability = DurabilityFull
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 512
	}
	if opts.GroupWait == 0 {
		opts.GroupWait = time.Millisecond
	}
	if opts.GroupMin <= 0 {
		opts.GroupMin = 8
	}
	if opts.CheckpointEvery <= 0 {
		opts.CheckpointEvery = 1000
	}
	if opts.CheckpointInterval <= 0 {
		opts.CheckpointInterval = time.Minute
	}
	var sync string
	switch opts.Durability {
	case DurabilityFull:
		sync = "FULL"
	case DurabilityNormal:
		sync = "NORMAL"
	default:
		return nil, fmt.Errorf("open decision log: unknown durability %q (want full or normal)", opts.Durability)
	}
	// One writer: the lock comes before anything is written, the database
	// file included.
	lock, err := lockWriter(path)
	if err != nil {
		return nil, err
	}
	// Create the file ourselves so that its mode is 0600 from the start;
	// SQLite gives the -wal and -shm files the same mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("open decision log: %w", err)
	}
	f.Close()

	// The journal mode is set in init, after the page size. _mutex=no
	// drops SQLite's per-call locking, which database/sql makes redundant:
	// it never uses one connection from two goroutines at once. It was an
	// eighth of the writer's CPU.
	//
	// The commit that fills the WAL past wal_autocheckpoint pages copies
	// them into the database while its callers wait. The checkpointer
	// does that copying on a connection of its own, every 10ms while rows
	// are written, so when the writer's own checkpoint comes (at 1,024
	// pages, 16 MiB) little is left to copy, and the WAL starts over. At
	// one client the p99 went from 0.81 ms (a 256-page checkpoint inside
	// 1.2% of commits) to 0.57 ms.
	rw := dsn(path, "_synchronous="+sync+"&_busy_timeout=5000&_txlock=immediate&_mutex=no")
	//
	// journal_size_limit truncates the WAL file back to 64 MiB whenever it
	// starts over: a WAL that grew behind a slow reader gives the disk
	// space back after the next checkpoint, instead of keeping its largest
	// size until a restart.
	db := openDB(rw, func(c *sqlite3.SQLiteConn) error {
		_, err := c.Exec(`PRAGMA wal_autocheckpoint = 1024; PRAGMA journal_size_limit = `+strconv.Itoa(journalSizeLimit), nil)
		return err
	})
	// One connection: SQLite has one writer anyway, and the chain's head is
	// only correct if every write goes through the writer goroutine.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)

	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := &Log{path: path, opts: opts, logger: logger, db: db, lock: lock, reqs: make(chan *appendReq, 4096), done: make(chan struct{}), quiet: make(chan struct{}, 1),
		ckptDB: openDB(rw, nil), ckptWake: make(chan struct{}, 1), ckptDone: make(chan struct{})}
	l.ckptDB.SetMaxOpenConns(1)
	if err := l.init(ctx); err != nil {
		db.Close()
		l.ckptDB.Close()
		if l.state != nil {
			l.state.close()
		}
		lock.Close()
		return nil, fmt.Errorf("open decision log %s: %w", path, err)
	}
	// The index is derived data: without it decisions are still logged and
	// queries still answer, by scanning.
	x, err := openIndexer(ctx, path, l.origin, l.logger)
	if err != nil {
		l.logger.Warn("decision log: queries will scan without the provenance index", "err", err)
	}
	r, err := OpenReader(path)
	if err != nil {
		if x != nil {
			x.close()
		}
		l.closeStmts()
		db.Close()
		l.ckptDB.Close()
		if l.state != nil {
			l.state.close()
		}
		lock.Close()
		return nil, err
	}
	l.Reader = r
	if x != nil {
		var ictx context.Context
		ictx, l.stopIndex = context.WithCancel(context.Background())
		l.index, l.indexDone = x, make(chan struct{})
		go func() {
			defer close(l.indexDone)
			x.run(ictx)
		}()
	}
	go l.checkpointer()
	go l.writer()
	if len(l.startRows) > 0 {
		if err := l.Append(ctx, l.startRows...); err != nil {
			l.Close(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("open decision log %s: record integrity events: %w", path, err)
		}
	}
	return l, nil
}

func (l *Log) init(ctx context.Context) error {
	// A new log gets 16 KiB pages (an existing one keeps its own): a
	// decision row is 1 to 1.5 KB, so a 4 KiB page holds two or three and
	// wastes a fifth of itself. Measured on the bench mix: 1,588 bytes a
	// row with 4 KiB pages, 1,457 with 16 KiB. It must precede WAL mode.
	if _, err := l.db.ExecContext(ctx, `PRAGMA page_size = 16384`); err != nil {
		return err
	}
	var mode string
	if err := l.db.QueryRowContext(ctx, `PRAGMA journal_mode = WAL`).Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q, want wal (is the file on a filesystem without shared memory?)", mode)
	}
	// Triggers an older log lacks are recorded when they are restored,
	// even if a migration that rebuilds the table made them again.
	var version int
	if err := l.db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	var unguarded []string
	if version > 0 {
		var err error
		if unguarded, err = unguardedTriggers(ctx, l.db); err != nil {
			return err
		}
	}
	if err := migrate(ctx, l.db, l.opts.schema); err != nil {
		return err
	}
	origin := l.opts.Origin
	if origin == "" {
		origin = uuid.NewString()
	}
	if _, err := l.db.ExecContext(ctx, `INSERT OR IGNORE INTO meta(key, value) VALUES ('origin', ?)`, origin); err != nil {
		return fmt.Errorf("write origin: %w", err)
	}
	if err := l.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'origin'`).Scan(&l.origin); err != nil {
		return fmt.Errorf("read origin: %w", err)
	}
	if l.opts.Origin != "" && l.opts.Origin != l.origin {
		return fmt.Errorf("the log's origin is %q, not %q as configured: a log's origin never changes (start a new log for a new origin)", l.origin, l.opts.Origin)
	}
	if err := l.loadHead(ctx); err != nil {
		return err
	}
	if key := l.opts.SigningKey; key != nil {
		var err error
		if l.signer, err = newSigner(l.origin, key); err != nil {
			return fmt.Errorf("origin %q cannot name a checkpoint key (no spaces or '+'): %w", l.origin, err)
		}
		if l.state, err = openState(l.path, key); err != nil {
			return err
		}
		if err := l.checkTail(ctx); err != nil {
			return err
		}
	}
	if err := l.restoreTriggers(ctx, unguarded); err != nil {
		return err
	}
	if err := l.syncMerkle(ctx); err != nil {
		return err
	}
	var err error
	if l.generated, err = generatedColumns(ctx, l.db); err != nil {
		return err
	}
	if l.generated {
		l.insertRead, err = l.db.PrepareContext(ctx, insertGeneratedSQL)
	} else if l.insertRead, err = l.db.PrepareContext(ctx, insertReadSQL); err == nil {
		l.insert, err = l.db.PrepareContext(ctx, insertSQL)
	}
	if err != nil {
		return err
	}
	for _, n := range leafChunks {
		st, err := l.db.PrepareContext(ctx, leafInsertSQL(n))
		if err != nil {
			return err
		}
		l.leafIns = append(l.leafIns, st)
	}
	return nil
}

// closeStmts closes the writer's prepared statements.
func (l *Log) closeStmts() error {
	var errs []error
	for _, st := range []*sql.Stmt{l.insert, l.insertRead} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	for _, st := range l.leafIns {
		errs = append(errs, st.Close())
	}
	return errors.Join(errs...)
}

// loadHead reads the last committed row, the point the chain continues from.
func (l *Log) loadHead(ctx context.Context) error {
	err := l.db.QueryRowContext(ctx, `SELECT seq, hash FROM log ORDER BY seq DESC LIMIT 1`).Scan(&l.seq, &l.head)
	if errors.Is(err, sql.ErrNoRows) {
		l.seq, l.head, l.since = 0, nil, 0
		return nil
	}
	if err != nil {
		return fmt.Errorf("read log head: %w", err)
	}
	var last sql.NullInt64
	if err := l.db.QueryRowContext(ctx, `SELECT max(seq) FROM log WHERE kind = 'checkpoint'`).Scan(&last); err != nil {
		return fmt.Errorf("read last checkpoint: %w", err)
	}
	l.since = l.seq - last.Int64
	return nil
}

// Origin identifies this log among others shipped to one receiver; with seq
// it makes every row's identity unique.
func (l *Log) Origin() string { return l.origin }

// Path is the database file.
func (l *Log) Path() string { return l.path }

// Append writes entries as one unit, assigning their Seq and Hash, and
// returns once they are committed with the configured durability. Entries
// from concurrent calls share a commit. If ctx ends first, Append returns
// its error, and the entries may or may not be committed later; callers
// must not treat them as written.
func (l *Log) Append(ctx context.Context, entries ...*Entry) error {
	if len(entries) == 0 {
		return nil
	}
	req := &appendReq{entries: entries, result: make(chan error, 1)}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return ErrClosed
	}
	select {
	case l.reqs <- req:
		l.mu.RUnlock()
	case <-ctx.Done():
		l.mu.RUnlock()
		return ctx.Err()
	}
	select {
	case err := <-req.result:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Expect announces an entry that is being prepared and will be appended
// soon, so that a commit under load can wait for it rather than fsync
// without it, as PostgreSQL's commit_delay does while other transactions
// are active. Call arrived just before the Append, or when the entry will
// not come; calls after the first do nothing.
func (l *Log) Expect() (arrived func()) {
	l.expected.Add(1)
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) && l.expected.Add(-1) == 0 {
			select {
			case l.quiet <- struct{}{}:
			default:
			}
		}
	}
}

// writer owns the write connection until Close closes reqs.
func (l *Log) writer() {
	defer close(l.done)
	defer close(l.ckptWake)
	var tick <-chan time.Time
	if l.opts.SigningKey != nil {
		t := time.NewTicker(l.opts.CheckpointInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case first, ok := <-l.reqs:
			if !ok {
				// Closing: sign what is not yet signed, so a clean stop leaves
				// nothing that could be cut off unnoticed.
				if l.opts.SigningKey != nil && l.since > 0 {
					l.commit(nil, true)
				}
				return
			}
			batch, took, err := l.commit(first, false)
			if l.opts.OnCommit != nil {
				n := 0
				for _, r := range batch {
					n += len(r.entries)
				}
				l.opts.OnCommit(n, took, err)
			}
			for _, r := range batch {
				if r.refused != nil {
					r.result <- r.refused
				} else {
					r.result <- err
				}
			}
		case <-tick:
			if l.since > 0 {
				l.commit(nil, true) // a failure is counted; the next tick or batch retries
			}
		}
	}
}

// commit writes first's entries and the group that gathers behind them in
// one transaction, chaining hashes from the head, with a signed checkpoint
// after them when one is due (or forced; first may then be nil). The group
// is what queued while the last commit ran, and what arrives while it
// waits: up to MaxWait always, and up to GroupWait after a large group (see
// Options). Entries are inserted as they arrive, so the wait overlaps the
// work. It returns the requests it took and how long the COMMIT itself
// took. A row SQLite refuses for its content (see rowError) fails its own
// request alone, with ErrRowRefused: the transaction starts over without
// it, so one bad row never costs the requests it shared a commit with. On
// any other failure nothing is committed, the head is re-read so the next
// commit chains from what is on disk, and every request taken shares the
// error.
func (l *Log) commit(first *appendReq, forceCheckpoint bool) (batch []*appendReq, took time.Duration, err error) {
	ctx := context.Background() // a commit is never abandoned half way for one caller
	if first != nil {
		batch = append(batch, first)
	}
	if l.foreign != nil {
		l.failures.Add(1)
		return batch, 0, l.foreign
	}
	var (
		tx         *sql.Tx
		stmt       *sql.Stmt // l.insert in tx, once an entry needs it
		stmtRead   *sql.Stmt // l.insertRead in tx, likewise
		args       []any     // stmt's arguments, one row's at a time
		seq, since int64
		start      int64
		prev       []byte
		written    []*Entry
	)
	// begin starts the transaction, over again after a refused row, from
	// the head the last commit left.
	begin := func() error {
		var err error
		if tx, err = l.db.BeginTx(ctx, nil); err != nil {
			return l.failed(fmt.Errorf("append: begin: %w", err))
		}
		stmt, stmtRead = nil, nil
		seq, prev, since = l.seq, l.head, l.since
		start, written = seq, written[:0]
		l.work = l.tree
		l.leaves.reset(seq)
		return nil
	}
	// write inserts one row and computes its Merkle leaf, which is
	// inserted with the commit's others just before it commits. A row
	// SQLite refuses for its content is a rowError; the caller rolls back.
	write := func(e *Entry) error {
		seq++
		e.Seq = seq
		e.Hash = ChainHash(prev, e)
		prev = e.Hash
		// The body is bound as TEXT (json_extract reads it as JSON)
		// without copying it: the driver copies it into SQLite anyway, and
		// an appended entry's body is never modified.
		body := unsafe.String(unsafe.SliceData(e.Body), len(e.Body))
		var err error
		if k := e.Keys; k != nil && !l.generated {
			// The columns as the entry gives them: SQLite reading them
			// from the body cost a parse of it, about 3 µs of CPU a row
			// on the bench's 1.5 KB bodies (docs/architecture.md).
			if stmt == nil {
				stmt = tx.StmtContext(ctx, l.insert)
			}
			// database/sql converts the arguments before Exec returns, so
			// one slice serves every row of the commit.
			args = append(args[:0], e.Seq, string(e.Kind), e.Time.UnixNano(), body, e.Hash)
			for _, c := range tableColumns {
				args = append(args, text(c.get(k)))
			}
			_, err = stmt.ExecContext(ctx, args...)
		} else {
			if stmtRead == nil {
				stmtRead = tx.StmtContext(ctx, l.insertRead)
			}
			_, err = stmtRead.ExecContext(ctx, e.Seq, string(e.Kind), e.Time.UnixNano(), body, e.Hash)
		}
		if err != nil {
			return fmt.Errorf("append seq %d: %w", e.Seq, err)
		}
		if l.leaves.blobs, err = l.work.add(e.Hash, l.leaves.blobs); err != nil {
			return fmt.Errorf("append seq %d: %w", e.Seq, err)
		}
		l.leaves.ends = append(l.leaves.ends, len(l.leaves.blobs))
		written = append(written, e)
		if e.Kind != KindCosignature {
			since++
		}
		return nil
	}
	// add writes one request's entries. A row SQLite refuses for its
	// content fails that request alone: the transaction starts over with
	// the other requests taken so far. Any other failure fails the commit.
	var add func(r *appendReq) error
	add = func(r *appendReq) error {
		for _, e := range r.entries {
			err := write(e)
			if err == nil {
				continue
			}
			tx.Rollback()
			if !rowError(err) {
				return l.failed(err)
			}
			r.refused = fmt.Errorf("%w: %w", ErrRowRefused, err)
			for _, e := range r.entries {
				e.Seq, e.Hash = 0, nil
			}
			if err := begin(); err != nil {
				return err
			}
			for _, taken := range batch {
				if taken.refused == nil {
					if err := add(taken); err != nil {
						return err
					}
				}
			}
			return nil
		}
		return nil
	}
	if err := begin(); err != nil {
		return batch, 0, err
	}
	if first != nil {
		if err := add(first); err != nil {
			return batch, 0, err
		}
		n := len(first.entries)
		var maxWait, groupWait <-chan time.Time
		if l.opts.MaxWait > 0 {
			t := time.NewTimer(l.opts.MaxWait)
			defer t.Stop()
			maxWait = t.C
		}
		if l.last >= l.opts.GroupMin && l.opts.GroupWait > 0 {
			t := time.NewTimer(l.opts.GroupWait)
			defer t.Stop()
			groupWait = t.C
		}
	group:
		for n < l.opts.MaxBatch {
			var r *appendReq
			var ok bool
			select {
			case r, ok = <-l.reqs:
			default:
				if groupWait != nil && n >= l.last && l.expected.Load() == 0 {
					groupWait = nil // as large a group as the last, and nothing on its way
				}
				if maxWait == nil && groupWait == nil {
					break group
				}
				select {
				case r, ok = <-l.reqs:
				case <-l.quiet:
					continue // look again: the last one announced may be queued now
				case <-maxWait:
					break group
				case <-groupWait:
					groupWait = nil
					continue
				}
			}
			if !ok {
				break group // closing: commit what was taken
			}
			batch = append(batch, r)
			if err := add(r); err != nil {
				return batch, 0, err
			}
			n += len(r.entries)
		}
		l.last = n
	}
	signed := false
	if l.signer != nil && since > 0 && (forceCheckpoint || since >= int64(l.opts.CheckpointEvery)) {
		root, err := tlog.TreeHash(seq, &l.work)
		var c *Checkpoint
		if err == nil {
			c, err = newCheckpoint(l.signer, l.origin, seq, prev, root)
		}
		var body []byte
		if err == nil {
			body, err = json.Marshal(c)
		}
		if err != nil {
			tx.Rollback()
			return batch, 0, l.failed(fmt.Errorf("append checkpoint: %w", err))
		}
		if err := write(&Entry{Kind: KindCheckpoint, Time: time.Now(), Body: body, Keys: &Keys{}}); err != nil {
			tx.Rollback()
			return batch, 0, l.failed(err)
		}
		since = 0 // the checkpoint row itself is covered by the next one
		signed = true
	}
	// The Merkle rows of every row above, in the same transaction.
	if err := l.leaves.insert(ctx, tx, l.leafIns); err != nil {
		tx.Rollback()
		return batch, 0, l.failed(fmt.Errorf("append: %w", err))
	}
	// Say where this commit leaves the log before making it, so that after
	// a crash at any point the log ends where the state says, or one
	// commit before.
	if l.state != nil {
		if err := l.state.write(l.origin, l.seq, l.head, seq, prev, signed); err != nil {
			tx.Rollback()
			return batch, 0, l.failed(err)
		}
	}
	committing := time.Now()
	if err := tx.Commit(); err != nil {
		return batch, time.Since(committing), l.failed(fmt.Errorf("append: commit: %w", err))
	}
	took = time.Since(committing)
	l.seq, l.head, l.since = seq, prev, since
	l.tree = l.work
	l.commits.Add(1)
	l.committed.Add(uint64(seq - start))
	if l.index != nil {
		l.index.offer(written)
	}
	select {
	case l.ckptWake <- struct{}{}:
	default:
	}
	return batch, took, nil
}

// text is a column's value as the driver binds it: the string, or NULL.
func text(v sql.NullString) any {
	if !v.Valid {
		return nil
	}
	return v.String
}

// journalSizeLimit is the size the WAL file is truncated to when it starts
// over (PRAGMA journal_size_limit), in bytes.
const journalSizeLimit = 64 << 20

// checkpointInterval is how often, at most, the checkpointer runs while
// rows are being written. Each run costs two fsyncs, of the WAL and of the
// database, on its own goroutine; the more often it runs, the less the
// writer's own checkpoint has left to copy.
const checkpointInterval = 10 * time.Millisecond

// checkpointer copies committed WAL frames into the database after commits,
// at most every checkpointInterval, until the writer stops. PASSIVE never
// waits for the writer or readers. Under steady load it never quite
// finishes (the writer keeps appending), so it is the writer's checkpoint,
// with almost nothing left to copy, that lets the WAL start over.
func (l *Log) checkpointer() {
	defer close(l.ckptDone)
	var last time.Time
	for range l.ckptWake {
		if wait := checkpointInterval - time.Since(last); wait > 0 {
			time.Sleep(wait)
		}
		last = time.Now()
		var busy, frames, copied int
		if err := l.ckptDB.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied); err != nil {
			l.logger.Warn("decision log: checkpoint failed; the next commit retries", "err", err)
		}
	}
}

// failed counts a failed commit and checks that the log still ends where
// the writer left it. If it does not, something else wrote the log: the
// writer then refuses every later append rather than chain onto, and
// sign, rows it did not write.
func (l *Log) failed(err error) error {
	l.failures.Add(1)
	var seq int64
	var head []byte
	herr := l.db.QueryRow(`SELECT seq, hash FROM log ORDER BY seq DESC LIMIT 1`).Scan(&seq, &head)
	if errors.Is(herr, sql.ErrNoRows) {
		herr = nil
	}
	if herr != nil {
		return errors.Join(err, fmt.Errorf("read log head: %w", herr))
	}
	if seq != l.seq || !bytes.Equal(head, l.head) {
		l.foreign = fmt.Errorf("the decision log was written by another process: it ends at seq %d, this writer left it at seq %d; refusing to write (restart to check the log)", seq, l.seq)
		l.logger.Error("decision log: " + l.foreign.Error())
		return errors.Join(err, l.foreign)
	}
	return err
}

// Close stops accepting entries, commits those already queued, and closes
// the database. It waits for the writer until ctx ends.
func (l *Log) Close(ctx context.Context) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.reqs)
	l.mu.Unlock()
	select {
	case <-l.done:
	case <-ctx.Done():
		return fmt.Errorf("close decision log: %w", ctx.Err())
	}
	<-l.ckptDone // stops with the writer, after a checkpoint in progress
	var indexErr error
	if l.index != nil {
		// The indexer catches up with the last rows before it stops, so
		// that queries after a clean stop need not scan.
		l.stopIndex()
		select {
		case <-l.indexDone:
		case <-ctx.Done():
			return fmt.Errorf("close decision log: provenance index: %w", ctx.Err())
		}
		indexErr = l.index.close()
	}
	var stateErr error
	if l.state != nil {
		if l.foreign == nil {
			stateErr = l.state.write(l.origin, l.seq, l.head, l.seq, l.head, true)
		}
		stateErr = errors.Join(stateErr, l.state.close())
	}
	err := errors.Join(l.closeStmts(), l.Reader.Close(), l.ckptDB.Close(), l.db.Close(), indexErr, stateErr)
	return errors.Join(err, l.lock.Close()) // the lock goes last: nothing of ours writes after it
}
