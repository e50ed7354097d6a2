package decisionlog

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/agentpdp/agentpdp/pdp/wire"
)

// ErrNotFound is returned when no entry matches.
var ErrNotFound = errors.New("not found")

// Reader queries the log over a read-only connection. The CLI uses one on
// its own, so that reading the log never needs write access to it; the
// daemon's Log embeds one for the admin socket.
type Reader struct {
	db      *sql.DB
	path    string
	indexed bool // the provenance index is attached as "idx"
}

// OpenReader opens the log at path read-only. The file must exist. Its
// provenance index is used if it is there and describes this log.
func OpenReader(path string) (*Reader, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("open decision log: %w", err)
	}
	main := dsn(path, "mode=ro&_busy_timeout=5000&_query_only=1")
	db := openDB(main, nil)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open decision log %s: %w", path, err)
	}
	if !indexUsable(db, IndexPath(path)) {
		return &Reader{db: db, path: path}, nil
	}
	db.Close()
	index := dsn(IndexPath(path), "mode=ro")
	db = openDB(main, func(c *sqlite3.SQLiteConn) error {
		if _, err := c.Exec(`ATTACH DATABASE ? AS idx`, []driver.Value{index}); err != nil {
			return fmt.Errorf("attach provenance index: %w", err)
		}
		return nil
	})
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open decision log %s: %w", path, err)
	}
	return &Reader{db: db, path: path, indexed: true}, nil
}

// indexUsable reports whether the index at path exists and describes the
// log open in db. Any trouble reading it means no: queries then scan.
func indexUsable(db *sql.DB, path string) bool {
	if _, err := os.Stat(path); err != nil {
		return false
	}
	idx, err := sql.Open("sqlite3", dsn(path, "mode=ro&_busy_timeout=5000&_query_only=1"))
	if err != nil {
		return false
	}
	defer idx.Close()
	ok, _, err := indexMatches(context.Background(), idx, db, "")
	return err == nil && ok
}

// IndexedThrough reports the last seq the provenance index covers, and
// whether this reader has an index at all: without one, queries by
// principal, session, task, trace, on-behalf-of, credential or tool call
// scan the log, and so do they for rows after the seq it reports.
func (r *Reader) IndexedThrough(ctx context.Context) (int64, bool, error) {
	if !r.indexed {
		return 0, false, nil
	}
	var seq int64
	if err := r.db.QueryRowContext(ctx, `SELECT value FROM idx.meta WHERE key = 'indexed_seq'`).Scan(&seq); err != nil {
		return 0, true, fmt.Errorf("read provenance index: %w", err)
	}
	return seq, true, nil
}

// Close closes the read connections.
func (r *Reader) Close() error { return r.db.Close() }

// Filter selects entries. Empty fields match everything.
type Filter struct {
	Kinds []Kind
	// Principal, Action and Resource take the Cedar form, Agent::"x", for an
	// exact match, or a bare id, x, that matches the id under any type.
	Principal, Action, Resource string
	DecisionID                  string
	Decision                    string // allow, deny, step_up
	SessionID, TaskID, TraceID  string
	ApprovalID                  string // decisions that used this approval
	Classification, OnBehalfOf  string
	CredentialID, ToolCallID    string
	ParentDecisionID            string
	PeerUID                     *uint32
	ShadowDiff                  bool      // only decisions the shadow policies would have answered otherwise
	Since, Until                time.Time // Since inclusive, Until exclusive
	BeforeSeq                   int64     // for paging: only seq < BeforeSeq
	FromSeq                     int64     // only seq ≥ FromSeq
	Limit                       int       // default 100
	// ByBody compares every field in the row's body, which the hash
	// covers, and neither its column nor the provenance index: for a
	// lookup whose answer must not change with a column changed behind
	// the triggers' back (which only Verify sees), such as whether an
	// approval was used. It parses every row the other conditions leave,
	// so bound them (FromSeq). ShadowDiff still reads the columns.
	ByBody bool
}

// where builds the condition for f. With the provenance index attached, a
// key it holds narrows the rows to the seqs it lists plus those it has not
// reached yet; the row's own value (its column, or its body at the
// field's path: fieldSQL) is compared either way, so an index that
// lags or is stale can cost time but never change the answer. An id the
// log table has a column for is compared in the body too (rechecked).
func (f Filter) where(indexed bool) (string, []any) {
	var conds []string
	var args []any
	if len(f.Kinds) > 0 {
		ph := strings.TrimSuffix(strings.Repeat("?,", len(f.Kinds)), ",")
		conds = append(conds, "kind IN ("+ph+")")
		for _, k := range f.Kinds {
			args = append(args, string(k))
		}
	}
	for _, c := range f.Fields() {
		if f.ByBody {
			conds = append(conds, extract(c.Field)+" = ?")
			args = append(args, c.Value)
			continue
		}
		if v, ok := c.Value.(string); ok && indexed {
			if k, ok := indexKeyFor(c.Field, v); ok {
				// UNION rather than OR: SQLite then looks each seq up in the
				// primary key instead of scanning the log.
				conds = append(conds, "seq IN (SELECT seq FROM idx.keys WHERE k = ? UNION ALL SELECT seq FROM log WHERE seq > (SELECT value FROM idx.meta WHERE key = 'indexed_seq'))")
				args = append(args, k)
			}
		}
		conds = append(conds, fieldSQL(c.Field)+" = ?")
		args = append(args, c.Value)
		if rechecked[c.Field] {
			conds = append(conds, extract(c.Field)+" = ?")
			args = append(args, c.Value)
		}
	}
	if f.ShadowDiff {
		// The text of the partial index log_shadow_diff (migration 3), so
		// that SQLite uses it.
		conds = append(conds, fmt.Sprintf("%[1]s IS NOT NULL AND %[1]s != %[2]s", wire.FieldShadowDecision.Name, wire.FieldDecision.Name))
	}
	if !f.Since.IsZero() {
		conds = append(conds, "time >= ?")
		args = append(args, f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		conds = append(conds, "time < ?")
		args = append(args, f.Until.UnixNano())
	}
	if f.BeforeSeq > 0 {
		conds = append(conds, "seq < ?")
		args = append(args, f.BeforeSeq)
	}
	if f.FromSeq > 0 {
		conds = append(conds, "seq >= ?")
		args = append(args, f.FromSeq)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// FieldValue is one condition of a [Filter]: the record's value at Field
// equals Value.
type FieldValue struct {
	Field wire.Field
	Value any // a string, or a uint32 for wire.FieldPeerUID
}

// Fields lists f's conditions on the record's fields, in a fixed order:
// each store builds its query from them (this package's SQLite log, the
// fleet's PostgreSQL), so that a filter reads the path the record is
// stored at. Principal, Action and Resource in Cedar form compare the
// record's Cedar-form field; a bare id compares the request's id under any
// type. Kinds, times, seqs and ShadowDiff are not record fields, and not
// listed.
func (f Filter) Fields() []FieldValue {
	var out []FieldValue
	add := func(field wire.Field, v string) {
		if v != "" {
			out = append(out, FieldValue{field, v})
		}
	}
	ref := func(cedar, bare wire.Field, v string) {
		if strings.Contains(v, "::") {
			add(cedar, v)
		} else {
			add(bare, v)
		}
	}
	ref(wire.FieldPrincipal, wire.FieldPrincipalID, f.Principal)
	ref(wire.FieldAction, wire.FieldActionID, f.Action)
	ref(wire.FieldResource, wire.FieldResourceID, f.Resource)
	add(wire.FieldDecisionID, f.DecisionID)
	add(wire.FieldDecision, f.Decision)
	add(wire.FieldSessionID, f.SessionID)
	add(wire.FieldTaskID, f.TaskID)
	add(wire.FieldTraceID, f.TraceID)
	add(wire.FieldApprovalID, f.ApprovalID)
	add(wire.FieldClassification, f.Classification)
	add(wire.FieldOnBehalfOf, f.OnBehalfOf)
	add(wire.FieldCredentialID, f.CredentialID)
	add(wire.FieldToolCallID, f.ToolCallID)
	add(wire.FieldParentDecisionID, f.ParentDecisionID)
	if f.PeerUID != nil {
		out = append(out, FieldValue{wire.FieldPeerUID, *f.PeerUID})
	}
	return out
}

// Query returns matching entries, newest first.
func (r *Reader) Query(ctx context.Context, f Filter) ([]*Entry, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	where, args := f.where(r.indexed)
	rows, err := r.db.QueryContext(ctx, `SELECT seq, kind, time, body, hash FROM log`+where+` ORDER BY seq DESC LIMIT ?`, append(args, f.Limit)...)
	if err != nil {
		return nil, fmt.Errorf("query decision log: %w", err)
	}
	defer rows.Close()
	var out []*Entry
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, fmt.Errorf("query decision log: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query decision log: %w", err)
	}
	return out, nil
}

// UsedApprovals are the approvals (request.approval) that allow decisions
// at seq ≥ fromSeq used, read from each row's body, which the hash covers,
// and not from the approval_id and decision columns, which it does not: a
// column changed behind the triggers' back (only Verify sees it) must not
// hide a use and make a spent single-use approval good again. It reads
// every decision row from fromSeq on, once.
func (r *Reader) UsedApprovals(ctx context.Context, fromSeq int64) (map[string]bool, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT DISTINCT approval FROM (
		SELECT `+extract(wire.FieldApprovalID)+` AS approval, `+extract(wire.FieldDecision)+` AS decision
		FROM log WHERE seq >= ? AND kind = 'decision')
		WHERE approval IS NOT NULL AND decision = 'allow'`, fromSeq)
	if err != nil {
		return nil, fmt.Errorf("used approvals: %w", err)
	}
	defer rows.Close()
	used := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("used approvals: %w", err)
		}
		used[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("used approvals: %w", err)
	}
	return used, nil
}

// Decision returns the decision entry with the given id.
func (r *Reader) Decision(ctx context.Context, id string) (*Entry, error) {
	if id == "" {
		// The filter leaves an empty field out: it would match every
		// decision and answer one nobody named.
		return nil, fmt.Errorf("decision %q: %w", id, ErrNotFound)
	}
	es, err := r.Query(ctx, Filter{Kinds: []Kind{KindDecision}, DecisionID: id, Limit: 1})
	if err != nil {
		return nil, err
	}
	if len(es) == 0 {
		return nil, fmt.Errorf("decision %s: %w", id, ErrNotFound)
	}
	return es[0], nil
}

// PolicyLoad returns the newest policy-load entry for a policy version.
func (r *Reader) PolicyLoad(ctx context.Context, version string) (*Entry, error) {
	row := r.db.QueryRowContext(ctx, `SELECT seq, kind, time, body, hash FROM log
		WHERE kind = 'policy_load' AND `+fieldSQL(wire.FieldPolicyVersion)+` = ? ORDER BY seq DESC LIMIT 1`, version)
	e, err := scanEntry(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("policy version %s: %w", version, ErrNotFound)
	}
	return e, err
}

// Stats describes the log as a whole.
type Stats struct {
	Rows    int64 `json:"rows"`
	LastSeq int64 `json:"last_seq"`
	Bytes   int64 `json:"bytes"` // the database's pages

	// The provenance index: its pages, and the last seq it covers (rows
	// after it are found by scanning). Zero without an index.
	IndexBytes int64 `json:"index_bytes"`
	IndexedSeq int64 `json:"indexed_seq"`

	// WALBytes is the size of the write-ahead log file: frames committed
	// but not yet copied into the database, or space kept for the next.
	WALBytes int64 `json:"wal_bytes"`
}

// WALBytes is the size of the log's -wal file, 0 if there is none.
func (r *Reader) WALBytes() int64 {
	st, err := os.Stat(r.path + "-wal")
	if err != nil {
		return 0
	}
	return st.Size()
}

// LastSeq is the seq of the newest row, 0 for an empty log: one lookup in
// the primary key, cheap enough for every metrics scrape (Stats counts rows).
func (r *Reader) LastSeq(ctx context.Context) (int64, error) {
	var last int64
	if err := r.db.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM log`).Scan(&last); err != nil {
		return 0, fmt.Errorf("decision log: last seq: %w", err)
	}
	return last, nil
}

// Stats reads the size and head of the log.
func (r *Reader) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	var last sql.NullInt64
	if err := r.db.QueryRowContext(ctx, `SELECT count(*), max(seq) FROM log`).Scan(&s.Rows, &last); err != nil {
		return s, fmt.Errorf("decision log stats: %w", err)
	}
	s.LastSeq = last.Int64
	var pages, size int64
	if err := r.db.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages); err != nil {
		return s, fmt.Errorf("decision log stats: %w", err)
	}
	if err := r.db.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&size); err != nil {
		return s, fmt.Errorf("decision log stats: %w", err)
	}
	s.Bytes = pages * size
	s.WALBytes = r.WALBytes()
	if !r.indexed {
		return s, nil
	}
	if err := r.db.QueryRowContext(ctx, `SELECT p.page_count * s.page_size FROM pragma_page_count('idx') p, pragma_page_size('idx') s`).Scan(&s.IndexBytes); err != nil {
		return s, fmt.Errorf("decision log stats: index size: %w", err)
	}
	var err error
	if s.IndexedSeq, _, err = r.IndexedThrough(ctx); err != nil {
		return s, fmt.Errorf("decision log stats: %w", err)
	}
	return s, nil
}

type scanner interface{ Scan(...any) error }

func scanEntry(s scanner) (*Entry, error) {
	var (
		e    Entry
		kind string
		ns   int64
		body string
	)
	if err := s.Scan(&e.Seq, &kind, &ns, &body, &e.Hash); err != nil {
		return nil, err
	}
	e.Kind = Kind(kind)
	e.Time = time.Unix(0, ns).UTC()
	e.Body = []byte(body)
	return &e, nil
}

// Scan calls fn for every entry with seq ≥ from, in seq order, holding one
// row in memory at a time. fn's error stops the scan and is returned.
func (r *Reader) Scan(ctx context.Context, from int64, fn func(*Entry) error) error {
	return r.ScanFilter(ctx, Filter{FromSeq: from}, fn)
}

// Summary counts decisions for log stats.
type Summary struct {
	Decisions   int64            `json:"decisions"`
	ByDecision  map[string]int64 `json:"by_decision"`
	ByPrincipal []Count          `json:"by_principal"` // most first, at most 20
	ByAction    []Count          `json:"by_action"`
	PerHour     []Count          `json:"per_hour"` // key: hour start, RFC 3339, oldest first
	Outcomes    map[string]int64 `json:"outcomes"`
	Approvals   int64            `json:"approvals"`
}

// Count is one group of a Summary.
type Count struct {
	Key   string `json:"key"`
	Count int64  `json:"count"`
}

// Summarize counts the decisions, outcomes and approvals logged in [since,
// until); zero times are unbounded.
func (r *Reader) Summarize(ctx context.Context, since, until time.Time) (*Summary, error) {
	lo, hi := int64(0), int64(1<<63-1)
	if !since.IsZero() {
		lo = since.UnixNano()
	}
	if !until.IsZero() {
		hi = until.UnixNano()
	}
	s := &Summary{ByDecision: map[string]int64{}, Outcomes: map[string]int64{}}
	group := func(expr, kind string, limit int, order string) ([]Count, error) {
		rows, err := r.db.QueryContext(ctx, `SELECT `+expr+` AS k, count(*) FROM log WHERE kind = ? AND time >= ? AND time < ? GROUP BY k ORDER BY `+order+` LIMIT ?`, kind, lo, hi, limit)
		if err != nil {
			return nil, fmt.Errorf("summarize: %w", err)
		}
		defer rows.Close()
		var out []Count
		for rows.Next() {
			var c Count
			var k sql.NullString
			if err := rows.Scan(&k, &c.Count); err != nil {
				return nil, fmt.Errorf("summarize: %w", err)
			}
			c.Key = k.String
			out = append(out, c)
		}
		return out, rows.Err()
	}
	byDecision, err := group(fieldSQL(wire.FieldDecision), string(KindDecision), 10, "k")
	if err != nil {
		return nil, err
	}
	for _, c := range byDecision {
		s.ByDecision[c.Key] = c.Count
		s.Decisions += c.Count
	}
	if s.ByPrincipal, err = group(fieldSQL(wire.FieldPrincipal), string(KindDecision), 20, "count(*) DESC, k"); err != nil {
		return nil, err
	}
	if s.ByAction, err = group(fieldSQL(wire.FieldAction), string(KindDecision), 20, "count(*) DESC, k"); err != nil {
		return nil, err
	}
	if s.PerHour, err = group("strftime('%Y-%m-%dT%H:00:00Z', time / 1000000000, 'unixepoch')", string(KindDecision), 24*366, "k"); err != nil {
		return nil, err
	}
	outcomes, err := group(extract(wire.FieldOutcomeStatus), string(KindOutcome), 10, "k")
	if err != nil {
		return nil, err
	}
	for _, c := range outcomes {
		s.Outcomes[c.Key] = c.Count
	}
	approvals, err := group("kind", string(KindApproval), 1, "k")
	if err != nil {
		return nil, err
	}
	for _, c := range approvals {
		s.Approvals = c.Count
	}
	return s, nil
}

// A long scan reads in chunks of at most scanChunkRows rows or
// scanChunkBytes bytes of bodies, each in a read transaction of its own
// that ends before fn sees the rows. A reader holding one transaction for
// a whole export, verify or replay pins the WAL: checkpoints cannot copy
// past its snapshot, so the WAL grows by every row written meanwhile
// (356 MB behind a stalled export under 4 clients) and SQLite cannot start
// it over. Between chunks nothing is pinned, however slowly fn runs.
const (
	scanChunkRows  = 1000
	scanChunkBytes = 8 << 20
)

// ScanFilter calls fn for every entry matching f in seq order; f.Limit is
// ignored. It holds one chunk of rows (at most 1,000, or 8 MiB of bodies)
// in memory, and no read transaction while fn runs. The log only grows at
// its end and is pruned only at its start, so chunks read at different
// times join up: each starts after the last seq of the one before.
func (r *Reader) ScanFilter(ctx context.Context, f Filter, fn func(*Entry) error) error {
	for {
		chunk, more, err := r.scanChunk(ctx, f)
		if err != nil {
			return fmt.Errorf("scan decision log: %w", err)
		}
		for _, e := range chunk {
			if err := fn(e); err != nil {
				return err
			}
		}
		if !more {
			return nil
		}
		f.FromSeq = chunk[len(chunk)-1].Seq + 1
	}
}

// scanChunk reads the next chunk of f's rows in one read transaction, and
// reports whether there may be more.
func (r *Reader) scanChunk(ctx context.Context, f Filter) ([]*Entry, bool, error) {
	where, args := f.where(r.indexed)
	rows, err := r.db.QueryContext(ctx, `SELECT seq, kind, time, body, hash FROM log`+where+` ORDER BY seq LIMIT ?`, append(args, scanChunkRows)...)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	var chunk []*Entry
	bytes := 0
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, false, err
		}
		chunk = append(chunk, e)
		if bytes += len(e.Body); bytes >= scanChunkBytes {
			return chunk, true, nil
		}
	}
	return chunk, len(chunk) == scanChunkRows, rows.Err()
}

// Origin identifies the log among others shipped to one receiver.
func (r *Reader) Origin(ctx context.Context) (string, error) {
	var o string
	if err := r.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'origin'`).Scan(&o); err != nil {
		return "", fmt.Errorf("read origin: %w", err)
	}
	return o, nil
}
