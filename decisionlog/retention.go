package decisionlog

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/agentpdp/agentpdp/pdp/wire"
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

// Where a sink starts shipping when it is first seen (the start key of a
// sink's configuration).
const (
	// StartOldest ships every row from the oldest one still in the log.
	StartOldest = "oldest"
	// StartNow ships the rows after the log's last seq at the moment the
	// sink is first seen; the rows before stay local (and may be pruned).
	StartNow = "now"
)

// CursorState is one sink's cursor and where it started, as ship_cursors
// holds it.
type CursorState struct {
	Sink string `json:"sink"`
	// Seq is the last row the sink acknowledged, or, before its first
	// acknowledgement, StartSeq.
	Seq int64 `json:"cursor"`
	// Start is StartOldest or StartNow, as recorded when the sink was
	// first seen; a later change of the configuration does not change it.
	Start string `json:"start"`
	// StartSeq is where the sink began: it ships the rows after it (0 for
	// StartOldest). The rows up to StartSeq were never meant to ship.
	StartSeq int64 `json:"start_seq"`
	// Started is when the sink was first seen; nil for a cursor made
	// before the start was recorded (it started at the oldest row).
	Started *time.Time `json:"started_at,omitempty"`
	Updated time.Time  `json:"updated"`
}

// Start records where sink starts, the first time it is seen, and returns
// its state: with StartNow its first cursor is the log's last seq, read in
// the same statement that writes the cursor (so no row committed after it
// is skipped); with StartOldest it is 0. A sink already seen keeps the
// start it has, whatever mode says now: compare the returned Start. An
// unknown mode is an error.
func (c *Cursors) Start(ctx context.Context, sink, mode string) (CursorState, error) {
	if mode != StartOldest && mode != StartNow {
		return CursorState{}, fmt.Errorf("ship cursor %s: start %q: want %s or %s", sink, mode, StartOldest, StartNow)
	}
	now := time.Now().UnixNano()
	// WHERE true: SQLite needs it to tell INSERT … SELECT from ON CONFLICT.
	_, err := c.db.ExecContext(ctx, `INSERT INTO ship_cursors(sink, seq, updated, start, start_seq, started)
		SELECT ?1, first, ?3, ?2, first, ?3 FROM (SELECT CASE WHEN ?2 = 'now' THEN coalesce((SELECT max(seq) FROM log), 0) ELSE 0 END AS first) WHERE true
		ON CONFLICT(sink) DO NOTHING`, sink, mode, now)
	if err != nil {
		return CursorState{}, fmt.Errorf("record the start of ship cursor %s: %w", sink, err)
	}
	st, _, err := cursorState(ctx, c.db, sink)
	return st, err
}

// State is sink's cursor and start; ok is false if the sink was never seen.
func (c *Cursors) State(ctx context.Context, sink string) (st CursorState, ok bool, err error) {
	return cursorState(ctx, c.db, sink)
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

const cursorColumns = `sink, seq, start, start_seq, started, updated`

func scanCursor(rows *sql.Rows) (CursorState, error) {
	var st CursorState
	var started sql.NullInt64
	var updated int64
	if err := rows.Scan(&st.Sink, &st.Seq, &st.Start, &st.StartSeq, &started, &updated); err != nil {
		return st, err
	}
	if started.Valid {
		t := time.Unix(0, started.Int64).UTC()
		st.Started = &t
	}
	st.Updated = time.Unix(0, updated).UTC()
	return st, nil
}

func cursorState(ctx context.Context, db queryer, sink string) (CursorState, bool, error) {
	rows, err := db.QueryContext(ctx, `SELECT `+cursorColumns+` FROM ship_cursors WHERE sink = ?`, sink)
	if err != nil {
		return CursorState{}, false, fmt.Errorf("ship cursor %s: %w", sink, err)
	}
	defer rows.Close()
	if !rows.Next() {
		return CursorState{}, false, rows.Err()
	}
	st, err := scanCursor(rows)
	if err != nil {
		return st, false, fmt.Errorf("ship cursor %s: %w", sink, err)
	}
	return st, true, nil
}

// CursorStates is every sink's cursor and start, by name.
func (r *Reader) CursorStates(ctx context.Context) ([]CursorState, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT `+cursorColumns+` FROM ship_cursors ORDER BY sink`)
	if err != nil {
		return nil, fmt.Errorf("ship cursors: %w", err)
	}
	defer rows.Close()
	var out []CursorState
	for rows.Next() {
		st, err := scanCursor(rows)
		if err != nil {
			return nil, fmt.Errorf("ship cursors: %w", err)
		}
		out = append(out, st)
	}
	return out, rows.Err()
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

// PruneRecord is the body of a prune row. It says that every row before
// Anchor is deleted except Kept, under Rule, and is signed, as a signed note
// over [PruneRecord.Text], with the checkpoint key: rows missing from the
// start of the log are retention only if such a record, made with the key,
// says so exactly. Each record describes the whole pruned prefix, so the
// newest one that matches the log is the one that counts.
type PruneRecord struct {
	Anchor int64     `json:"anchor_seq"` // the first row of the chain kept: a checkpoint
	Kept   []KeptRow `json:"kept,omitempty"`
	Rule   string    `json:"rule"` // the retention rule, for people: "max_age=720h shipped_by=upstream"
	Origin string    `json:"log_origin"`
	KeyID  string    `json:"key_id"`
	Note   string    `json:"note"`
}

// pruneAnchor is PruneRecord's anchor, which Prune reads back from the
// newest prune row.
var pruneAnchor = wire.Field{Name: "anchor_seq", Path: "$.anchor_seq", Type: "INTEGER"}

// KeptRow is a row before the anchor that a prune kept (a policy load a
// retained decision refers to). With PrevHash, the hash of the row before
// it, its own hash can be recomputed although its neighbours are gone.
type KeptRow struct {
	Seq      int64  `json:"seq"`
	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
}

// Text is what the record's note signs.
func (p *PruneRecord) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "agentpdp prune v1\n%s\n%d\n%s\n", p.Origin, p.Anchor, strings.Join(strings.Fields(p.Rule), " "))
	for _, k := range p.Kept {
		fmt.Fprintf(&b, "%d %s %s\n", k.Seq, k.PrevHash, k.Hash)
	}
	return b.String()
}

// Open checks the record's signature with pub and that it signs the
// record's own fields.
func (p *PruneRecord) Open(pub ed25519.PublicKey) error {
	v, err := Verifier(p.Origin, pub)
	if err != nil {
		return err
	}
	n, err := note.Open([]byte(p.Note), note.VerifierList(v))
	if err != nil {
		return fmt.Errorf("prune record signature does not verify: %w", err)
	}
	if n.Text != p.Text() {
		return errors.New("prune record: its fields are not what its note signs")
	}
	return nil
}

// PruneResult says what Prune removed.
type PruneResult struct {
	Deleted int64   `json:"deleted"`
	Anchor  int64   `json:"anchor_seq"` // the first row of the chain kept: a checkpoint
	Kept    []int64 `json:"kept_seqs,omitempty"`
	Record  int64   `json:"record_seq"` // the signed prune row
}

// Prune deletes the oldest rows, all with seq ≤ upTo at most, stopping just
// before a checkpoint row: that checkpoint signs the tree of every row
// before it and the hash of the last one deleted, so verification continues
// from it (the retained anchor). Policy-load rows that decisions after the
// anchor refer to are kept, so that every retained decision can still be
// explained and replayed. First it appends a signed prune row saying
// exactly that, and waits for its commit; only then does it delete. It
// needs the signing key (Options.SigningKey). rule says, for people, why
// (which retention setting). Callers decide upTo: old enough, and shipped by
// every sink. The deletion runs on the writer's connection, between
// commits, and lifts the append-only guard only inside its transaction.
func (l *Log) Prune(ctx context.Context, upTo int64, rule string) (PruneResult, error) {
	var res PruneResult
	if l.signer == nil {
		return res, errors.New("prune: needs the signing key: a prune leaves a signed record of what it deleted")
	}
	err := l.Reader.db.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM log WHERE kind = 'checkpoint' AND seq - 1 <= ?`, upTo).Scan(&res.Anchor)
	if err != nil {
		return res, fmt.Errorf("prune: %w", err)
	}
	var first int64
	if err := l.Reader.db.QueryRowContext(ctx, `SELECT coalesce(min(seq), 0) FROM log WHERE seq >= coalesce((SELECT max(`+extract(pruneAnchor)+`) FROM log WHERE kind = 'prune'), 0)`).Scan(&first); err != nil {
		return res, fmt.Errorf("prune: %w", err)
	}
	if res.Anchor == 0 || res.Anchor <= first {
		return res, fmt.Errorf("prune up to seq %d: %w", upTo, ErrNoAnchor)
	}
	rec := &PruneRecord{Anchor: res.Anchor, Rule: rule, Origin: l.origin, KeyID: KeyID(l.signer.key.Public().(ed25519.PublicKey))}
	if rec.Kept, err = l.Reader.keptLoads(ctx, res.Anchor); err != nil {
		return res, fmt.Errorf("prune: %w", err)
	}
	signed, err := note.Sign(&note.Note{Text: rec.Text()}, l.signer)
	if err != nil {
		return res, fmt.Errorf("prune: sign: %w", err)
	}
	rec.Note = string(signed)
	body, err := json.Marshal(rec)
	if err != nil {
		return res, fmt.Errorf("prune: %w", err)
	}
	e := &Entry{Kind: KindPrune, Time: time.Now(), Body: body, Keys: &Keys{}}
	if err := l.Append(ctx, e); err != nil {
		return res, fmt.Errorf("prune: record: %w", err)
	}
	res.Record = e.Seq
	for _, k := range rec.Kept {
		res.Kept = append(res.Kept, k.Seq)
	}
	res.Deleted, err = deletePrefix(ctx, l.db, res.Anchor, res.Kept)
	return res, err
}

// keptLoads lists the policy-load rows before anchor that a decision from
// anchor on refers to (the newest load of each version it names), with the
// hashes their proof needs.
func (r *Reader) keptLoads(ctx context.Context, anchor int64) ([]KeptRow, error) {
	version := fieldSQL(wire.FieldPolicyVersion)
	rows, err := r.db.QueryContext(ctx, `SELECT max(seq) FROM log
		WHERE kind = 'policy_load' AND seq < ?1 AND `+version+` IN (
			SELECT DISTINCT `+version+` FROM log WHERE kind = 'decision' AND seq >= ?1 AND `+version+` IS NOT NULL)
		GROUP BY `+version+` ORDER BY 1`, anchor)
	if err != nil {
		return nil, fmt.Errorf("policy loads to keep: %w", err)
	}
	var seqs []int64
	for rows.Next() {
		var s int64
		if err := rows.Scan(&s); err != nil {
			rows.Close()
			return nil, err
		}
		seqs = append(seqs, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var kept []KeptRow
	for _, s := range seqs {
		var hash []byte
		if err := r.db.QueryRowContext(ctx, `SELECT hash FROM log WHERE seq = ?`, s).Scan(&hash); err != nil {
			return nil, fmt.Errorf("policy load at seq %d: %w", s, err)
		}
		prev, err := r.prevHash(ctx, s)
		if err != nil {
			return nil, err
		}
		kept = append(kept, KeptRow{Seq: s, PrevHash: hex.EncodeToString(prev), Hash: hex.EncodeToString(hash)})
	}
	return kept, nil
}

// prevHash is the chain hash of the row before seq: read from that row, or,
// if it was pruned, from the prune record that kept seq or from the
// checkpoint at seq (which signs it).
func (r *Reader) prevHash(ctx context.Context, seq int64) ([]byte, error) {
	if seq == 1 {
		return nil, nil
	}
	var h []byte
	err := r.db.QueryRowContext(ctx, `SELECT hash FROM log WHERE seq = ?`, seq-1).Scan(&h)
	if err == nil {
		return h, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("row %d: %w", seq-1, err)
	}
	var kind, body string
	if err := r.db.QueryRowContext(ctx, `SELECT kind, body FROM log WHERE seq = ?`, seq).Scan(&kind, &body); err != nil {
		return nil, fmt.Errorf("row %d: %w", seq, err)
	}
	if kind == string(KindCheckpoint) {
		var c Checkpoint
		if err := json.Unmarshal([]byte(body), &c); err == nil {
			return hex.DecodeString(c.HeadHash)
		}
	}
	rows, err := r.db.QueryContext(ctx, `SELECT body FROM log WHERE kind = 'prune' ORDER BY seq DESC`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var b string
		if err := rows.Scan(&b); err != nil {
			return nil, err
		}
		var p PruneRecord
		if json.Unmarshal([]byte(b), &p) != nil {
			continue
		}
		for _, k := range p.Kept {
			if k.Seq == seq {
				return hex.DecodeString(k.PrevHash)
			}
		}
	}
	return nil, fmt.Errorf("row %d: the row before it was pruned and no prune record keeps its hash", seq)
}

// deletePrefix deletes every row before anchor except keep.
func deletePrefix(ctx context.Context, db *sql.DB, anchor int64, keep []int64) (int64, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	defer tx.Rollback()
	keepJSON, _ := json.Marshal(append([]int64{}, keep...))
	if _, err := tx.ExecContext(ctx, `DROP TRIGGER log_no_delete`); err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	r, err := tx.ExecContext(ctx, `DELETE FROM log WHERE seq < ? AND seq NOT IN (SELECT value FROM json_each(?))`, anchor, string(keepJSON))
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	if _, err := tx.ExecContext(ctx, appendOnlyTriggers["log_no_delete"]); err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	n, _ := r.RowsAffected()
	return n, nil
}

// PruneFile prunes the log at path from another process than a daemon: it
// opens the log as its writer (so it fails while a daemon holds the lock),
// with the signing key, and closes it, which signs a checkpoint over the
// prune record.
func PruneFile(ctx context.Context, path string, upTo int64, rule string, key ed25519.PrivateKey) (PruneResult, error) {
	if key == nil {
		return PruneResult{}, errors.New("prune: needs the signing key: a prune leaves a signed record of what it deleted")
	}
	l, err := Open(ctx, path, Options{SigningKey: key})
	if err != nil {
		return PruneResult{}, fmt.Errorf("prune %s: %w", path, err)
	}
	res, err := l.Prune(ctx, upTo, rule)
	return res, errors.Join(err, l.Close(context.WithoutCancel(ctx)))
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
