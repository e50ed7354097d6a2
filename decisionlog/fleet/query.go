package fleet

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/internal/plural"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// OriginReport is what fleet verify found for one origin.
type OriginReport struct {
	Origin            string `json:"origin"`
	OK                bool   `json:"ok"`
	Rows              int64  `json:"rows"`
	VerifiedSeq       int64  `json:"verified_seq"` // rows 1 to this verify
	MaxSeq            int64  `json:"max_seq"`
	Checkpoints       int64  `json:"checkpoints"`
	SignaturesChecked bool   `json:"signatures_checked"`
	Cosignatures      int64  `json:"cosignatures"` // cosigned checkpoints whose root and cosignature verified
	Problem           string `json:"problem,omitempty"`
	ProblemSeq        int64  `json:"problem_seq,omitempty"`
}

// VerifyReport is fleet verify's answer.
type VerifyReport struct {
	Origins []OriginReport `json:"origins"`
	Rows    int64          `json:"rows"`
	Seconds float64        `json:"seconds"`
}

// OK reports whether every origin verified.
func (r *VerifyReport) OK() bool {
	for _, o := range r.Origins {
		if !o.OK {
			return false
		}
	}
	return true
}

// VerifyAll re-checks every stored chain from its first row: contiguity,
// each row's hash, each checkpoint's signature with the origin's key as the
// collector registered it, and each stored cosignature: its root must be
// the root of the stored rows, and its signature must verify with a
// registered witness key. Progress, if set, is called after each chunk.
func VerifyAll(ctx context.Context, s *Store, progress func(origin string, seq int64)) (*VerifyReport, error) {
	start := time.Now()
	rep := &VerifyReport{}
	type originKey struct {
		name string
		pub  []byte
		max  int64
	}
	var origins []originKey
	rows, err := s.pool.Query(ctx, `SELECT origin, pubkey, max_seq FROM fleet_origins ORDER BY origin`)
	if err != nil {
		return nil, fmt.Errorf("fleet verify: %w", err)
	}
	for rows.Next() {
		var o originKey
		if err := rows.Scan(&o.name, &o.pub, &o.max); err != nil {
			rows.Close()
			return nil, fmt.Errorf("fleet verify: %w", err)
		}
		origins = append(origins, o)
	}
	rows.Close()
	var witnesses []ed25519.PublicKey
	wrows, err := s.pool.Query(ctx, `SELECT name, pubkey FROM fleet_witnesses`)
	if err != nil {
		return nil, fmt.Errorf("fleet verify: %w", err)
	}
	for wrows.Next() {
		var name string
		var pub []byte
		if err := wrows.Scan(&name, &pub); err != nil {
			wrows.Close()
			return nil, fmt.Errorf("fleet verify: %w", err)
		}
		witnesses = append(witnesses, pub)
	}
	wrows.Close()
	for _, o := range origins {
		or, err := verifyOrigin(ctx, s, o.name, o.pub, o.max, witnesses, progress)
		if err != nil {
			return nil, err
		}
		rep.Rows += or.Rows
		rep.Origins = append(rep.Origins, *or)
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

func verifyOrigin(ctx context.Context, s *Store, origin string, pub ed25519.PublicKey, maxSeq int64, witnesses []ed25519.PublicKey, progress func(string, int64)) (*OriginReport, error) {
	or := &OriginReport{Origin: origin, MaxSeq: maxSeq, SignaturesChecked: len(pub) == ed25519.PublicKeySize}
	type cosig struct {
		root []byte
		note string
	}
	cosigs := map[uint64]cosig{}
	crows, err := s.pool.Query(ctx, `SELECT tree_size, root, checkpoint FROM fleet_cosignatures WHERE origin = $1`, origin)
	if err != nil {
		return nil, fmt.Errorf("fleet verify %s: %w", origin, err)
	}
	for crows.Next() {
		var size int64
		var c cosig
		if err := crows.Scan(&size, &c.root, &c.note); err != nil {
			crows.Close()
			return nil, fmt.Errorf("fleet verify %s: %w", origin, err)
		}
		cosigs[uint64(size)] = c
	}
	crows.Close()
	next := int64(1)
	fail := func(seq int64, problem string) (*OriginReport, error) {
		or.Problem, or.ProblemSeq, or.VerifiedSeq = problem, seq, next-1
		return or, nil
	}
	tree := NewTree()
	var head []byte
	checkCosig := func() string {
		c, ok := cosigs[tree.Size()]
		if !ok {
			return ""
		}
		delete(cosigs, tree.Size())
		if hex.EncodeToString(c.root) != hex.EncodeToString(tree.Root()) {
			return fmt.Sprintf("the cosignature at tree size %d is of another root than the stored rows'", tree.Size())
		}
		for _, w := range witnesses {
			if got, err := VerifyCosigned([]byte(c.note), w); err == nil && got.Size == tree.Size() && got.Origin == origin {
				or.Cosignatures++
				return ""
			}
		}
		return fmt.Sprintf("the cosignature at tree size %d verifies with no registered witness key", tree.Size())
	}
	for {
		batch, err := loadRows(ctx, s.pool, origin, next, 5000)
		if err != nil {
			return nil, fmt.Errorf("fleet verify %s: %w", origin, err)
		}
		if len(batch) == 0 {
			break
		}
		for _, r := range batch {
			if r.Seq != next {
				return fail(next, fmt.Sprintf("missing: the next stored row is seq %d", r.Seq))
			}
			if !r.ChainOK(head) {
				return fail(r.Seq, "hash does not match its content and the previous row")
			}
			if r.Kind == string(decisionlog.KindCheckpoint) {
				if or.SignaturesChecked {
					if _, err := checkHostCheckpoint(r.Body, origin, r.Seq, pub, head, tree.Root()); err != nil {
						return fail(r.Seq, err.Error())
					}
				}
				or.Checkpoints++
			}
			if p := checkCosig(); p != "" {
				return fail(r.Seq, p)
			}
			tree.Append(r.Hash)
			head = r.Hash
			or.Rows++
			next++
		}
		if progress != nil {
			progress(origin, next-1)
		}
	}
	or.VerifiedSeq = next - 1
	if p := checkCosig(); p != "" {
		return fail(next, p)
	}
	if len(cosigs) > 0 {
		for size := range cosigs {
			return fail(int64(size)+1, fmt.Sprintf("a cosignature at tree size %d, beyond the %s stored", size, plural.Count(tree.Size(), "row", "rows")))
		}
	}
	or.OK = true
	return or, nil
}

// EventFilter selects fleet events.
type EventFilter struct {
	Origin, Kind string
	Since        time.Time
	Limit        int // default 100
}

// Events lists fleet events, newest first.
func Events(ctx context.Context, s *Store, f EventFilter) ([]Event, error) {
	var conds []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, fmt.Sprintf(cond, len(args)))
	}
	if f.Origin != "" {
		add("origin = $%d", f.Origin)
	}
	if f.Kind != "" {
		add("kind = $%d", f.Kind)
	}
	if !f.Since.IsZero() {
		add("time >= $%d", f.Since)
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	q := `SELECT id, time, origin, kind, seq, problem, detail, collector FROM fleet_events`
	if len(conds) > 0 {
		q += " WHERE " + strings.Join(conds, " AND ")
	}
	args = append(args, f.Limit)
	q += fmt.Sprintf(" ORDER BY id DESC LIMIT $%d", len(args))
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("fleet events: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		if err := rows.Scan(&e.ID, &e.Time, &e.Origin, &e.Kind, &e.Seq, &e.Problem, &e.Detail, &e.Collector); err != nil {
			return nil, fmt.Errorf("fleet events: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// QueryFilter is log query's filter across origins.
type QueryFilter struct {
	decisionlog.Filter
	Origin string
}

// StoredRow is a row as stored, with its origin.
type StoredRow struct {
	Origin string
	Seq    int64
	Kind   string
	Time   time.Time
	Hash   []byte
	Body   []byte
}

// JSON is the row as the host shipped it: origin, seq, kind, time, hash,
// then the body's members.
func (r *StoredRow) JSON() ([]byte, error) {
	e := &decisionlog.Entry{Seq: r.Seq, Kind: decisionlog.Kind(r.Kind), Time: r.Time, Hash: r.Hash, Body: r.Body}
	b, err := e.MarshalJSON()
	if err != nil {
		return nil, err
	}
	out := fmt.Appendf(nil, `{"origin":%q,`, r.Origin)
	return append(out, b[1:]...), nil
}

// Query returns the rows that match, newest first. Filters on the fields
// of RowColumns use the stored columns; the others read the body at the
// field's path (decisionlog.Filter.Fields).
func Query(ctx context.Context, s *Store, f QueryFilter) ([]*StoredRow, error) {
	var conds []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, strings.ReplaceAll(cond, "$?", fmt.Sprintf("$%d", len(args))))
	}
	if f.Origin != "" {
		add("origin = $?", f.Origin)
	}
	if len(f.Kinds) > 0 {
		var ks []string
		for _, k := range f.Kinds {
			ks = append(ks, string(k))
		}
		add("kind = ANY($?)", ks)
	}
	for _, c := range f.Filter.Fields() {
		if slices.Contains(RowColumns, c.Field) {
			add(c.Field.Name+" = $?", c.Value)
		} else {
			// #>> reads text: the value is compared as its text.
			add(jsonb(c.Field)+" = $?", fmt.Sprint(c.Value))
		}
	}
	if f.ShadowDiff {
		shadow := jsonb(wire.FieldShadowDecision)
		conds = append(conds, shadow+" IS DISTINCT FROM "+wire.FieldDecision.Name+" AND "+shadow+" IS NOT NULL")
	}
	if !f.Since.IsZero() {
		add("time >= $?", f.Since)
	}
	if !f.Until.IsZero() {
		add("time < $?", f.Until)
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	q := `SELECT origin, seq, kind, time_ns, hash, body FROM fleet_rows`
	if len(conds) > 0 {
		q += " WHERE " + strings.Join(conds, " AND ")
	}
	args = append(args, f.Limit)
	q += fmt.Sprintf(" ORDER BY time DESC, origin, seq DESC LIMIT $%d", len(args))
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("fleet query: %w", err)
	}
	defer rows.Close()
	var out []*StoredRow
	for rows.Next() {
		r := &StoredRow{}
		var ns int64
		var body string
		if err := rows.Scan(&r.Origin, &r.Seq, &r.Kind, &ns, &r.Hash, &body); err != nil {
			return nil, fmt.Errorf("fleet query: %w", err)
		}
		r.Time, r.Body = time.Unix(0, ns).UTC(), []byte(body)
		out = append(out, r)
	}
	return out, rows.Err()
}

// jsonb is the PostgreSQL expression that reads f out of a row's body, as
// text. Paths are wire's own constants (member names only), never input.
func jsonb(f wire.Field) string {
	return "(body::jsonb #>> '{" + strings.Join(f.Members(), ",") + "}')"
}

// OriginStats is one origin's line of fleet stats.
type OriginStats struct {
	Origin        string     `json:"origin"`
	Rows          int64      `json:"rows"`
	MaxSeq        int64      `json:"max_seq"`
	VerifiedSeq   int64      `json:"verified_seq"`
	WitnessedSize int64      `json:"witnessed_size"`
	Halted        string     `json:"halted,omitempty"`
	GapSince      *time.Time `json:"gap_since,omitempty"`
	Events        int64      `json:"events"`
}

// Stats is fleet stats' answer: by origin, decision, principal and hour.
type Stats struct {
	Origins     []OriginStats       `json:"origins"`
	ByDecision  map[string]int64    `json:"by_decision"`
	ByPrincipal []decisionlog.Count `json:"by_principal"` // most first, at most 20
	PerHour     []decisionlog.Count `json:"per_hour"`     // key: hour start, RFC 3339, oldest first
	Bytes       int64               `json:"bytes"`        // fleet_rows' partitions with their indexes and TOAST
}

// FleetStats summarizes rows at or after since (zero: all).
func FleetStats(ctx context.Context, s *Store, since time.Time) (*Stats, error) {
	st := &Stats{ByDecision: map[string]int64{}}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT o.origin, o.max_seq, o.verified_seq, o.witnessed_size, coalesce(o.halted, ''), o.gap_since,
			(SELECT count(*) FROM fleet_rows r WHERE r.origin = o.origin AND r.time >= $1),
			(SELECT count(*) FROM fleet_events e WHERE e.origin = o.origin)
			FROM fleet_origins o ORDER BY o.origin`, since)
		if err != nil {
			return err
		}
		for rows.Next() {
			var o OriginStats
			if err := rows.Scan(&o.Origin, &o.MaxSeq, &o.VerifiedSeq, &o.WitnessedSize, &o.Halted, &o.GapSince, &o.Rows, &o.Events); err != nil {
				rows.Close()
				return err
			}
			st.Origins = append(st.Origins, o)
		}
		rows.Close()
		rows, err = tx.Query(ctx, `SELECT decision, count(*) FROM fleet_rows WHERE kind = 'decision' AND time >= $1 GROUP BY decision`, since)
		if err != nil {
			return err
		}
		for rows.Next() {
			var d *string
			var n int64
			if err := rows.Scan(&d, &n); err != nil {
				rows.Close()
				return err
			}
			if d != nil {
				st.ByDecision[*d] = n
			}
		}
		rows.Close()
		counts := func(q string) ([]decisionlog.Count, error) {
			rows, err := tx.Query(ctx, q, since)
			if err != nil {
				return nil, err
			}
			defer rows.Close()
			var out []decisionlog.Count
			for rows.Next() {
				var c decisionlog.Count
				if err := rows.Scan(&c.Key, &c.Count); err != nil {
					return nil, err
				}
				out = append(out, c)
			}
			return out, rows.Err()
		}
		if st.ByPrincipal, err = counts(`SELECT principal, count(*) FROM fleet_rows WHERE kind = 'decision' AND principal IS NOT NULL AND time >= $1
			GROUP BY principal ORDER BY count(*) DESC, principal LIMIT 20`); err != nil {
			return err
		}
		if st.PerHour, err = counts(`SELECT to_char(date_trunc('hour', time AT TIME ZONE 'UTC'), 'YYYY-MM-DD"T"HH24:00:00"Z"'), count(*)
			FROM fleet_rows WHERE kind = 'decision' AND time >= $1 GROUP BY 1 ORDER BY 1`); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)::bigint FROM pg_inherits WHERE inhparent = 'fleet_rows'::regclass`).Scan(&st.Bytes)
	})
	if err != nil {
		return nil, fmt.Errorf("fleet stats: %w", err)
	}
	return st, nil
}
