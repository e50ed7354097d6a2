package fleet

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrations are applied in order, each once, under an advisory lock so
// that collectors starting together do not race. Never edit one that has
// shipped: append a new one.
var migrations = []string{
	// 1: rows, partitioned by month of their time; the per-origin
	// verification and witness state; cosignatures; fleet events.
	`CREATE TABLE fleet_rows (
		origin      text        NOT NULL,
		seq         bigint      NOT NULL,
		time        timestamptz NOT NULL,
		time_ns     bigint      NOT NULL, -- exact, as hashed: timestamptz keeps microseconds
		kind        text        NOT NULL,
		hash        bytea       NOT NULL,
		body        text        NOT NULL, -- exactly as the host hashed it
		decision_id text,
		principal   text,
		action      text,
		resource    text,
		decision    text,
		received    timestamptz NOT NULL DEFAULT now(),
		-- A unique key on a partitioned table must hold the partition key.
		-- (origin, seq) alone is unique too: every insert for an origin
		-- holds its fleet_origins row lock and checks the seqs first.
		PRIMARY KEY (origin, seq, time)
	) PARTITION BY RANGE (time);
	CREATE INDEX fleet_rows_decision_id ON fleet_rows (decision_id) WHERE decision_id IS NOT NULL;
	CREATE INDEX fleet_rows_principal ON fleet_rows (principal, time) WHERE principal IS NOT NULL;
	CREATE INDEX fleet_rows_time ON fleet_rows USING brin (time);
	CREATE TABLE fleet_origins (
		origin         text PRIMARY KEY,
		pubkey         bytea,                    -- Ed25519, from the collector's configuration
		verified_seq   bigint NOT NULL DEFAULT 0, -- rows 1..verified_seq verified, contiguous
		head           bytea,                    -- chain hash of row verified_seq
		tree           bytea[] NOT NULL DEFAULT '{}', -- compact range of rows 1..verified_seq
		max_seq        bigint NOT NULL DEFAULT 0, -- the highest seq stored
		witnessed_size bigint NOT NULL DEFAULT 0, -- the newest cosigned tree size
		halted         text,                     -- why verification stopped, for good
		halted_seq     bigint,
		gap_since      timestamptz,              -- rows wait behind a missing one since
		updated        timestamptz NOT NULL DEFAULT now()
	);
	CREATE TABLE fleet_cosignatures (
		origin      text        NOT NULL,
		tree_size   bigint      NOT NULL,
		root        bytea       NOT NULL,
		checkpoint  text        NOT NULL, -- the C2SP note with the witness's cosignature
		cosigned_at timestamptz NOT NULL,
		collector   text        NOT NULL,
		PRIMARY KEY (origin, tree_size)
	);
	CREATE TABLE fleet_witnesses ( -- every key any collector cosigned with
		name   text  NOT NULL,
		pubkey bytea NOT NULL,
		PRIMARY KEY (name, pubkey)
	);
	CREATE TABLE fleet_events (
		id        bigserial PRIMARY KEY,
		time      timestamptz NOT NULL DEFAULT now(),
		origin    text   NOT NULL,
		kind      text   NOT NULL, -- fork, rollback, gap, bad_signature
		seq       bigint NOT NULL,
		evidence  bytea  NOT NULL, -- what makes this event distinct: the offending row's hash
		problem   text   NOT NULL,
		detail    jsonb  NOT NULL,
		collector text   NOT NULL,
		UNIQUE (origin, kind, seq, evidence)
	);`,
}

// migrationLock is the advisory lock key that serializes migrations and
// partition creation between collectors ("agentpdp" in ASCII).
const migrationLock = 0x6167656e74706470

// Store is the fleet's PostgreSQL database.
type Store struct {
	pool *pgxpool.Pool

	mu         sync.Mutex
	partitions map[string]bool // months known to have a partition
}

// OpenStore connects to PostgreSQL (a libpq DSN or URL) and brings the
// schema up to date.
func OpenStore(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s := &Store{pool: pool, partitions: map[string]bool{}}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return s, nil
}

// Close closes the connections.
func (s *Store) Close() { s.pool.Close() }

// Pool is the connection pool, for benchmarks and tests that measure it.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

func (s *Store) migrate(ctx context.Context) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLock)); err != nil {
			return fmt.Errorf("migrate: lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS fleet_schema (version int NOT NULL)`); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		var have int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM fleet_schema`).Scan(&have); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if have > len(migrations) {
			return fmt.Errorf("schema version %d is newer than this agentpdp (%d): upgrade agentpdp", have, len(migrations))
		}
		for i := have; i < len(migrations); i++ {
			if _, err := tx.Exec(ctx, migrations[i]); err != nil {
				return fmt.Errorf("migration %d: %w", i+1, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO fleet_schema(version) VALUES ($1)`, i+1); err != nil {
				return fmt.Errorf("migration %d: %w", i+1, err)
			}
		}
		return nil
	})
}

// month is the partition a time falls in.
func month(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// ensurePartitions creates the monthly partitions of fleet_rows that rows
// at times need. Creation takes the advisory lock, so that two collectors
// never race on one name; a month once seen is remembered.
func (s *Store) ensurePartitions(ctx context.Context, times []time.Time) error {
	var need []time.Time
	s.mu.Lock()
	for _, t := range times {
		m := month(t)
		if key := m.Format("200601"); !s.partitions[key] {
			s.partitions[key] = true // optimistic; undone below on failure
			need = append(need, m)
		}
	}
	s.mu.Unlock()
	if len(need) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLock)); err != nil {
			return err
		}
		for _, m := range need {
			// The name is our own digits, so formatting it into SQL is safe.
			name := "fleet_rows_" + m.Format("200601")
			q := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s PARTITION OF fleet_rows FOR VALUES FROM ('%s') TO ('%s')`,
				name, m.Format(time.RFC3339), m.AddDate(0, 1, 0).Format(time.RFC3339))
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("partition %s: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		s.mu.Lock()
		for _, m := range need {
			delete(s.partitions, m.Format("200601"))
		}
		s.mu.Unlock()
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}
