package fleet

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// Event kinds: what a collector found wrong with an origin's log. Each is
// stored in fleet_events, counted in agentpdp_fleet_events_total, logged,
// and never dropped.
const (
	// EventFork is a row that differs from the one stored for its origin
	// and seq, or that does not chain onto the stored row before it.
	EventFork = "fork"
	// EventRollback is a fork that reaches into witnessed history: the
	// host's log was cut or rewritten behind a checkpoint the witness
	// cosigned.
	EventRollback = "rollback"
	// EventGap is a missing row that later rows have waited behind for
	// longer than the configured delay.
	EventGap = "gap"
	// EventBadSignature is a checkpoint whose signature does not verify
	// with the origin's key, or that signs another head than the rows'.
	EventBadSignature = "bad_signature"
)

// Origin is a host's log the collector accepts: its name (the log's
// origin), the Ed25519 key its checkpoints are signed with, and how it
// authenticates: a bearer token, a client certificate's name, or both.
type Origin struct {
	Name      string
	PublicKey ed25519.PublicKey
	Token     string // the bearer token; "" if only a client certificate
	CertName  string // the client certificate's CN or DNS name (mutual TLS)
}

// Options configure a Collector.
type Options struct {
	Postgres string // libpq DSN or URL
	Witness  *Witness
	Origins  []Origin
	// GapDelay is how long rows may wait behind a missing one before a gap
	// event is raised; default 10m.
	GapDelay time.Duration
	// MaxBodyBytes bounds a request's body after decompression; default 64 MiB.
	MaxBodyBytes int64
	// Name names this collector in the rows and events it writes; default
	// the host name and pid.
	Name   string
	Logger *slog.Logger
}

// Collector verifies and stores shipped rows and witnesses checkpoints.
type Collector struct {
	store   *Store
	opts    Options
	origins map[string]*Origin
	log     *slog.Logger

	events   *prometheus.CounterVec
	rows     *prometheus.CounterVec
	cosigned *prometheus.CounterVec

	stop context.CancelFunc
	done chan struct{}
}

// Open connects to PostgreSQL, migrates it, records the origins' and the
// witness's public keys there (so that fleet verify needs no configuration)
// and starts the gap watcher.
func Open(ctx context.Context, opts Options) (*Collector, error) {
	if opts.Witness == nil {
		return nil, errors.New("collector: a witness key is required")
	}
	if opts.GapDelay <= 0 {
		opts.GapDelay = 10 * time.Minute
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 64 << 20
	}
	if opts.Name == "" {
		host, _ := os.Hostname()
		opts.Name = fmt.Sprintf("%s/%d", host, os.Getpid())
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Collector{opts: opts, origins: map[string]*Origin{}, log: opts.Logger.With("component", "collector"), done: make(chan struct{})}
	for i := range opts.Origins {
		o := &opts.Origins[i]
		if _, dup := c.origins[o.Name]; dup {
			return nil, fmt.Errorf("collector: origin %q is listed twice", o.Name)
		}
		c.origins[o.Name] = o
	}
	store, err := OpenStore(ctx, opts.Postgres)
	if err != nil {
		return nil, fmt.Errorf("collector: %w", err)
	}
	c.store = store
	err = pgx.BeginFunc(ctx, store.pool, func(tx pgx.Tx) error {
		for _, o := range opts.Origins {
			if _, err := tx.Exec(ctx, `INSERT INTO fleet_origins(origin, pubkey) VALUES ($1, $2)
				ON CONFLICT (origin) DO UPDATE SET pubkey = excluded.pubkey`, o.Name, []byte(o.PublicKey)); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO fleet_witnesses(name, pubkey) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
			opts.Witness.name, []byte(opts.Witness.pub))
		return err
	})
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("collector: register keys: %w", err)
	}
	c.events = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentpdp_fleet_events_total", Help: "Fleet events raised by this collector, by kind (fork, rollback, gap, bad_signature)."}, []string{"kind"})
	c.rows = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentpdp_fleet_rows_total", Help: "Rows received, by result (stored, duplicate, conflict)."}, []string{"result"})
	c.cosigned = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentpdp_fleet_cosignatures_total", Help: "Checkpoints this collector verified and cosigned."}, []string{})
	wctx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	go func() {
		defer close(c.done)
		c.watchGaps(wctx)
	}()
	return c, nil
}

// Collectors are the collector's Prometheus metrics.
func (c *Collector) Collectors() []prometheus.Collector {
	return []prometheus.Collector{c.events, c.rows, c.cosigned}
}

// Store is the collector's database.
func (c *Collector) Store() *Store { return c.store }

// Close stops the gap watcher and closes the database.
func (c *Collector) Close() {
	c.stop()
	<-c.done
	c.store.Close()
}

// Event is one fleet event, as stored and as answered to the host.
type Event struct {
	ID        int64          `json:"id,omitempty"`
	Time      time.Time      `json:"time"`
	Origin    string         `json:"origin"`
	Kind      string         `json:"kind"`
	Seq       int64          `json:"seq"`
	Problem   string         `json:"problem"`
	Detail    map[string]any `json:"detail,omitempty"`
	Collector string         `json:"collector,omitempty"`
}

// Witnessed is a cosigned checkpoint.
type Witnessed struct {
	TreeSize   int64     `json:"tree_size"`
	Checkpoint string    `json:"checkpoint"` // the C2SP note, with the witness's cosignature
	CosignedAt time.Time `json:"cosigned_at"`
}

// IngestResult is the collector's answer to a batch.
type IngestResult struct {
	Origin      string     `json:"origin"`
	Rows        int        `json:"rows"`
	Stored      int        `json:"stored"`
	Duplicates  int        `json:"duplicates"`
	VerifiedSeq int64      `json:"verified_seq"` // rows 1 to this are verified
	Halted      string     `json:"halted,omitempty"`
	Witnessed   *Witnessed `json:"witnessed,omitempty"` // the newest cosigned checkpoint of the origin
	Events      []Event    `json:"events,omitempty"`
}

// originState is an origin's row of fleet_origins, locked for one batch.
type originState struct {
	verified, maxSeq, witnessed int64
	head                        []byte
	tree                        *Tree
	halted                      *string
	haltedSeq                   *int64
	gapSince                    *time.Time
}

// Ingest stores one origin's rows and advances its verification, in one
// transaction that holds the origin's row lock: collectors sharing the
// database take turns per origin, so two never verify, or cosign, two
// different heads for one origin. Rows already stored are duplicates (at
// least once delivery) when identical and events when not.
func (c *Collector) Ingest(ctx context.Context, origin string, rows []*Row) (*IngestResult, error) {
	o := c.origins[origin]
	if o == nil {
		return nil, fmt.Errorf("ingest: origin %q is not configured", origin)
	}
	res := &IngestResult{Origin: origin, Rows: len(rows)}
	slices.SortStableFunc(rows, func(a, b *Row) int { return int(a.Seq - b.Seq) })
	var times []time.Time
	for _, r := range rows {
		if r.Origin != origin {
			return nil, fmt.Errorf("ingest: a row of origin %q in a batch of %q", r.Origin, origin)
		}
		times = append(times, time.Unix(0, r.TimeNS))
	}
	if err := c.store.ensurePartitions(ctx, times); err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	var raised, newEvents []Event
	err := pgx.BeginFunc(ctx, c.store.pool, func(tx pgx.Tx) error {
		raised, newEvents = raised[:0], newEvents[:0]
		res.Stored, res.Duplicates = 0, 0
		if _, err := tx.Exec(ctx, `INSERT INTO fleet_origins(origin, pubkey) VALUES ($1, $2) ON CONFLICT (origin) DO NOTHING`, origin, []byte(o.PublicKey)); err != nil {
			return err
		}
		st, err := lockOrigin(ctx, tx, origin)
		if err != nil {
			return err
		}
		fresh, evs, err := c.sortOut(ctx, tx, o, st, rows, res)
		if err != nil {
			return err
		}
		raised = append(raised, evs...)
		if err := insertRows(ctx, tx, fresh); err != nil {
			return err
		}
		res.Stored = len(fresh)
		if len(fresh) > 0 {
			st.maxSeq = max(st.maxSeq, fresh[len(fresh)-1].Seq)
		}
		evs, err = c.advance(ctx, tx, o, st, fresh)
		if err != nil {
			return err
		}
		raised = append(raised, evs...)
		for i := range raised {
			fresh, err := c.storeEvent(ctx, tx, &raised[i])
			if err != nil {
				return err
			}
			if fresh {
				newEvents = append(newEvents, raised[i])
			}
		}
		if err := saveOrigin(ctx, tx, origin, st); err != nil {
			return err
		}
		res.VerifiedSeq = st.verified
		if st.halted != nil {
			res.Halted = *st.halted
		}
		res.Witnessed, err = latestWitnessed(ctx, tx, origin)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ingest %s: %w", origin, err)
	}
	res.Events = raised
	c.rows.WithLabelValues("stored").Add(float64(res.Stored))
	c.rows.WithLabelValues("duplicate").Add(float64(res.Duplicates))
	c.report(newEvents)
	return res, nil
}

// report counts and logs events once their transaction committed.
func (c *Collector) report(evs []Event) {
	for i, e := range evs {
		c.events.WithLabelValues(e.Kind).Inc()
		if i < 10 {
			c.log.Error("fleet event", "kind", e.Kind, "origin", e.Origin, "seq", e.Seq, "problem", e.Problem)
		}
	}
	if len(evs) > 10 {
		c.log.Error("fleet events", "more", len(evs)-10, "origin", evs[0].Origin)
	}
}

func lockOrigin(ctx context.Context, tx pgx.Tx, origin string) (*originState, error) {
	st := &originState{}
	var tree [][]byte
	err := tx.QueryRow(ctx, `SELECT verified_seq, head, tree, max_seq, witnessed_size, halted, halted_seq, gap_since
		FROM fleet_origins WHERE origin = $1 FOR UPDATE`, origin).Scan(
		&st.verified, &st.head, &tree, &st.maxSeq, &st.witnessed, &st.halted, &st.haltedSeq, &st.gapSince)
	if err != nil {
		return nil, fmt.Errorf("lock origin: %w", err)
	}
	if st.tree, err = LoadTree(uint64(st.verified), tree); err != nil {
		return nil, fmt.Errorf("origin %s: stored tree: %w", origin, err)
	}
	return st, nil
}

func saveOrigin(ctx context.Context, tx pgx.Tx, origin string, st *originState) error {
	_, err := tx.Exec(ctx, `UPDATE fleet_origins SET verified_seq = $2, head = $3, tree = $4, max_seq = $5, witnessed_size = $6,
		halted = $7, halted_seq = $8, gap_since = $9, updated = now() WHERE origin = $1`,
		origin, st.verified, st.head, st.tree.Hashes(), st.maxSeq, st.witnessed, st.halted, st.haltedSeq, st.gapSince)
	return err
}

// sortOut splits a batch into rows not yet stored, duplicates of stored
// rows, and conflicts (events). Rows repeated inside the batch count once.
func (c *Collector) sortOut(ctx context.Context, tx pgx.Tx, o *Origin, st *originState, rows []*Row, res *IngestResult) ([]*Row, []Event, error) {
	if len(rows) == 0 {
		return nil, nil, nil
	}
	stored := map[int64][]byte{}
	q, err := tx.Query(ctx, `SELECT seq, hash FROM fleet_rows WHERE origin = $1 AND seq BETWEEN $2 AND $3`, o.Name, rows[0].Seq, rows[len(rows)-1].Seq)
	if err != nil {
		return nil, nil, err
	}
	for q.Next() {
		var seq int64
		var h []byte
		if err := q.Scan(&seq, &h); err != nil {
			q.Close()
			return nil, nil, err
		}
		stored[seq] = h
	}
	q.Close()
	if err := q.Err(); err != nil {
		return nil, nil, err
	}
	var fresh []*Row
	var evs []Event
	for _, r := range rows {
		h, ok := stored[r.Seq]
		switch {
		case !ok:
			stored[r.Seq] = r.Hash
			fresh = append(fresh, r)
		case bytes.Equal(h, r.Hash):
			res.Duplicates++
		default:
			e := c.forkEvent(o.Name, st, r, h, fmt.Sprintf("seq %d differs from the row stored for it", r.Seq))
			if st.halted == nil {
				// The host's log has parted from what it shipped before:
				// nothing it sends from now on is verified or witnessed.
				c.halt(st, r.Seq, e.Problem)
			}
			evs = append(evs, e)
		}
	}
	return fresh, evs, nil
}

// forkEvent is a row that conflicts with the stored log: a rollback when it
// reaches into witnessed history, a fork otherwise.
func (c *Collector) forkEvent(origin string, st *originState, r *Row, storedHash []byte, problem string) Event {
	kind := EventFork
	if r.Seq <= st.witnessed+1 {
		kind = EventRollback
		problem += fmt.Sprintf("; the witness cosigned this log at tree size %d", st.witnessed)
	}
	detail := map[string]any{
		"shipped_hash": hex.EncodeToString(r.Hash), "kind": r.Kind, "time_ns": r.TimeNS,
		"body": string(r.Body), "witnessed_size": st.witnessed,
	}
	if storedHash != nil {
		detail["stored_hash"] = hex.EncodeToString(storedHash)
	}
	return Event{Time: time.Now().UTC(), Origin: origin, Kind: kind, Seq: r.Seq, Problem: problem, Detail: detail}
}

func insertRows(ctx context.Context, tx pgx.Tx, rows []*Row) error {
	if len(rows) == 0 {
		return nil
	}
	n := len(rows)
	var (
		origins, kinds, bodies = make([]string, n), make([]string, n), make([]string, n)
		seqs, nss              = make([]int64, n), make([]int64, n)
		times                  = make([]time.Time, n)
		hashes                 = make([][]byte, n)
		columns                = make([][]*string, len(RowColumns)) // by column, then row
		opt                    = func(s string) *string { return map[bool]*string{true: nil, false: &s}[s == ""] }
	)
	for c := range columns {
		columns[c] = make([]*string, n)
	}
	for i, r := range rows {
		origins[i], seqs[i], nss[i], kinds[i], hashes[i], bodies[i] = r.Origin, r.Seq, r.TimeNS, r.Kind, r.Hash, string(r.Body)
		times[i] = time.Unix(0, r.TimeNS).UTC()
		for c := range columns {
			columns[c][i] = opt(r.Columns[c])
		}
	}
	names, arrays := "", ""
	args := []any{origins, seqs, times, nss, kinds, hashes, bodies}
	for c, f := range RowColumns {
		args = append(args, columns[c])
		names += ", " + f.Name
		arrays += fmt.Sprintf(", $%d::text[]", len(args))
	}
	// One statement per batch: unnest turns the arrays into rows. ON
	// CONFLICT is a safety net only: the origin's lock is held.
	_, err := tx.Exec(ctx, `INSERT INTO fleet_rows (origin, seq, time, time_ns, kind, hash, body`+names+`)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::bigint[], $5::text[], $6::bytea[], $7::text[]`+arrays+`)
		ON CONFLICT DO NOTHING`, args...)
	if err != nil {
		return fmt.Errorf("insert rows: %w", err)
	}
	return nil
}

// advance verifies the origin's rows from the one after verified_seq for as
// long as they are contiguous: each row's hash chains onto the previous
// row's, each checkpoint is signed by the origin's key over the head the
// rows reach, and each checkpoint so verified, being consistent with the
// previous one by construction (the tree grows from the same rows), is
// cosigned. Rows come from the batch, or from the table when they arrived
// earlier, out of order.
func (c *Collector) advance(ctx context.Context, tx pgx.Tx, o *Origin, st *originState, batch []*Row) ([]Event, error) {
	if st.halted != nil {
		return nil, nil
	}
	mem := map[int64]*Row{}
	for _, r := range batch {
		mem[r.Seq] = r
	}
	var evs []Event
	for st.verified < st.maxSeq {
		next := st.verified + 1
		r := mem[next]
		if r == nil {
			more, err := loadRows(ctx, tx, o.Name, next, 2000)
			if err != nil {
				return nil, err
			}
			for _, m := range more {
				mem[m.Seq] = m
			}
			if r = mem[next]; r == nil {
				break // a gap: later rows wait for this one
			}
		}
		if !r.ChainOK(st.head) {
			e := c.forkEvent(o.Name, st, r, nil, fmt.Sprintf("seq %d does not chain onto seq %d as the collector holds it: the log was rewritten before it", r.Seq, r.Seq-1))
			c.halt(st, r.Seq, e.Problem)
			return append(evs, e), nil
		}
		if r.Kind == "checkpoint" {
			text, err := checkHostCheckpoint(r.Body, o.Name, r.Seq, o.PublicKey, st.head, st.tree.Root())
			if err != nil {
				e := Event{Time: time.Now().UTC(), Origin: o.Name, Kind: EventBadSignature, Seq: r.Seq, Problem: err.Error(),
					Detail: map[string]any{"body": string(r.Body), "shipped_hash": hex.EncodeToString(r.Hash)}}
				c.halt(st, r.Seq, e.Problem)
				return append(evs, e), nil
			}
			if err := c.cosign(ctx, tx, o.Name, st, text); err != nil {
				return nil, err
			}
		}
		st.tree.Append(r.Hash)
		st.head, st.verified = r.Hash, r.Seq
		delete(mem, r.Seq)
	}
	if st.verified < st.maxSeq {
		if st.gapSince == nil {
			now := time.Now().UTC()
			st.gapSince = &now
		}
	} else {
		st.gapSince = nil
	}
	return evs, nil
}

func (c *Collector) halt(st *originState, seq int64, problem string) {
	st.halted, st.haltedSeq = &problem, &seq
}

// cosign witnesses a verified checkpoint of tree size tree.Size().
func (c *Collector) cosign(ctx context.Context, tx pgx.Tx, origin string, st *originState, text []byte) error {
	size := int64(st.tree.Size())
	if size <= st.witnessed {
		return nil // cosigned already, from these very rows
	}
	signed, err := c.opts.Witness.Cosign(text)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO fleet_cosignatures(origin, tree_size, root, checkpoint, cosigned_at, collector)
		VALUES ($1, $2, $3, $4, now(), $5)`, origin, size, st.tree.Root(), string(signed), c.opts.Name); err != nil {
		return fmt.Errorf("store cosignature: %w", err)
	}
	st.witnessed = size
	c.cosigned.WithLabelValues().Inc()
	return nil
}

// loadRows reads up to limit stored rows of origin from seq on.
func loadRows(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, origin string, from int64, limit int) ([]*Row, error) {
	rows, err := q.Query(ctx, `SELECT seq, time_ns, kind, hash, body FROM fleet_rows WHERE origin = $1 AND seq >= $2 ORDER BY seq LIMIT $3`, origin, from, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Row
	for rows.Next() {
		r := &Row{Origin: origin}
		var body string
		if err := rows.Scan(&r.Seq, &r.TimeNS, &r.Kind, &r.Hash, &body); err != nil {
			return nil, err
		}
		r.Body = []byte(body)
		r.Stub = isStub(r.Body)
		out = append(out, r)
	}
	return out, rows.Err()
}

// isStub reports whether a stored body is a too_large stub.
func isStub(body []byte) bool {
	return bytes.Contains(body, []byte(`"too_large":true`))
}

// storeEvent stores e unless the same event (origin, kind, seq and
// evidence) is stored already; fresh says it was new.
func (c *Collector) storeEvent(ctx context.Context, tx pgx.Tx, e *Event) (fresh bool, err error) {
	e.Collector = c.opts.Name
	evidence := []byte{}
	if h, ok := e.Detail["shipped_hash"].(string); ok {
		evidence, _ = hex.DecodeString(h)
	}
	tag, err := tx.Exec(ctx, `INSERT INTO fleet_events(time, origin, kind, seq, evidence, problem, detail, collector)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (origin, kind, seq, evidence) DO NOTHING`,
		e.Time, e.Origin, e.Kind, e.Seq, evidence, e.Problem, e.Detail, e.Collector)
	if err != nil {
		return false, fmt.Errorf("store event: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

func latestWitnessed(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, origin string) (*Witnessed, error) {
	w := &Witnessed{}
	err := q.QueryRow(ctx, `SELECT tree_size, checkpoint, cosigned_at FROM fleet_cosignatures WHERE origin = $1 ORDER BY tree_size DESC LIMIT 1`, origin).
		Scan(&w.TreeSize, &w.Checkpoint, &w.CosignedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read cosignature: %w", err)
	}
	return w, nil
}

// Witnessed is the newest checkpoint cosigned for origin, nil if none.
func (c *Collector) Witnessed(ctx context.Context, origin string) (*Witnessed, error) {
	return latestWitnessed(ctx, c.store.pool, origin)
}

// watchGaps raises a gap event for each origin whose rows have waited
// behind a missing one for longer than GapDelay. Every collector watches;
// the event's unique key makes it one event.
func (c *Collector) watchGaps(ctx context.Context) {
	every := min(max(c.opts.GapDelay/4, 100*time.Millisecond), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := c.checkGaps(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("gap check failed; retrying", "err", err)
		}
	}
}

func (c *Collector) checkGaps(ctx context.Context) error {
	var evs []Event
	err := pgx.BeginFunc(ctx, c.store.pool, func(tx pgx.Tx) error {
		evs = evs[:0]
		rows, err := tx.Query(ctx, `SELECT origin, verified_seq + 1, max_seq, gap_since FROM fleet_origins
			WHERE gap_since < now() - make_interval(secs => $1) AND halted IS NULL`, c.opts.GapDelay.Seconds())
		if err != nil {
			return err
		}
		for rows.Next() {
			var e Event
			var maxSeq int64
			var since time.Time
			if err := rows.Scan(&e.Origin, &e.Seq, &maxSeq, &since); err != nil {
				rows.Close()
				return err
			}
			e.Time, e.Kind = time.Now().UTC(), EventGap
			e.Problem = fmt.Sprintf("seq %d is missing; rows up to %d have waited behind it since %s", e.Seq, maxSeq, since.UTC().Format(time.RFC3339))
			e.Detail = map[string]any{"max_seq": maxSeq, "waiting_since": since}
			evs = append(evs, e)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		var fresh []Event
		for i := range evs {
			e := &evs[i]
			e.Collector = c.opts.Name
			tag, err := tx.Exec(ctx, `INSERT INTO fleet_events(time, origin, kind, seq, evidence, problem, detail, collector)
				VALUES ($1, $2, $3, $4, '', $5, $6, $7) ON CONFLICT (origin, kind, seq, evidence) DO NOTHING`,
				e.Time, e.Origin, e.Kind, e.Seq, e.Problem, e.Detail, e.Collector)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 1 {
				fresh = append(fresh, *e)
			}
		}
		evs = fresh
		return nil
	})
	if err != nil {
		return err
	}
	c.report(evs)
	return nil
}
