package decisionlog

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations are applied in order, each in its own transaction; the number
// applied is kept in PRAGMA user_version. Never edit one that has shipped:
// append a new one.
//
// The log table's columns over the body hold the record's fields at the
// paths wire.RecordColumns declares. Migrations 1-3 made a generated
// column for each of wire.RecordColumns; migration 8 dropped those no
// index reads, leaving wire.IndexedColumns; migration 9 made those
// ordinary columns, which the writer fills from each entry's Keys and
// Verify holds to the body. paths_test.go checks all three, so a field
// added to wire.IndexedColumns needs a migration appended here.
var migrations = []string{
	// 1: the log, its indexes, and append-only triggers.
	`CREATE TABLE log (
		seq  INTEGER PRIMARY KEY,
		kind TEXT    NOT NULL,
		time INTEGER NOT NULL, -- Unix nanoseconds
		body TEXT    NOT NULL, -- JSON, hashed as stored
		hash BLOB    NOT NULL,
		decision_id        TEXT GENERATED ALWAYS AS (json_extract(body, '$.decision_id')) VIRTUAL,
		principal          TEXT GENERATED ALWAYS AS (json_extract(body, '$.principal')) VIRTUAL,
		action             TEXT GENERATED ALWAYS AS (json_extract(body, '$.action')) VIRTUAL,
		resource           TEXT GENERATED ALWAYS AS (json_extract(body, '$.resource')) VIRTUAL,
		decision           TEXT GENERATED ALWAYS AS (json_extract(body, '$.decision')) VIRTUAL,
		policy_version     TEXT GENERATED ALWAYS AS (json_extract(body, '$.policy_version')) VIRTUAL,
		session_id         TEXT GENERATED ALWAYS AS (json_extract(body, '$.request.session_id')) VIRTUAL,
		task_id            TEXT GENERATED ALWAYS AS (json_extract(body, '$.request.task_id')) VIRTUAL,
		trace_id           TEXT GENERATED ALWAYS AS (json_extract(body, '$.request.trace_id')) VIRTUAL,
		parent_decision_id TEXT GENERATED ALWAYS AS (json_extract(body, '$.request.parent_decision_id')) VIRTUAL
	);
	CREATE INDEX log_time ON log(time);
	CREATE INDEX log_decision_id ON log(decision_id) WHERE decision_id IS NOT NULL;
	CREATE INDEX log_principal ON log(principal, seq) WHERE principal IS NOT NULL;
	CREATE INDEX log_session ON log(session_id) WHERE session_id IS NOT NULL;
	CREATE INDEX log_task ON log(task_id) WHERE task_id IS NOT NULL;
	CREATE INDEX log_trace ON log(trace_id) WHERE trace_id IS NOT NULL;
	CREATE INDEX log_parent ON log(parent_decision_id) WHERE parent_decision_id IS NOT NULL;
	CREATE INDEX log_policy_load ON log(kind, seq) WHERE kind = 'policy_load';
	CREATE TRIGGER log_no_update BEFORE UPDATE ON log
		BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END;
	CREATE TRIGGER log_no_delete BEFORE DELETE ON log
		BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END;
	CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);`,

	// 2: the provenance reviewers filter on, and approvals' consumption.
	`ALTER TABLE log ADD COLUMN classification TEXT GENERATED ALWAYS AS (json_extract(body, '$.classification')) VIRTUAL;
	ALTER TABLE log ADD COLUMN on_behalf_of TEXT GENERATED ALWAYS AS (json_extract(body, '$.request.on_behalf_of')) VIRTUAL;
	ALTER TABLE log ADD COLUMN credential_id TEXT GENERATED ALWAYS AS (json_extract(body, '$.request.credential.id')) VIRTUAL;
	ALTER TABLE log ADD COLUMN peer_uid INTEGER GENERATED ALWAYS AS (json_extract(body, '$.peer.uid')) VIRTUAL;
	ALTER TABLE log ADD COLUMN tool_call_id TEXT GENERATED ALWAYS AS (json_extract(body, '$.request.tool_call_id')) VIRTUAL;
	ALTER TABLE log ADD COLUMN approval_id TEXT GENERATED ALWAYS AS (json_extract(body, '$.request.approval')) VIRTUAL;
	CREATE INDEX log_on_behalf_of ON log(on_behalf_of) WHERE on_behalf_of IS NOT NULL;
	CREATE INDEX log_credential ON log(credential_id) WHERE credential_id IS NOT NULL;
	CREATE INDEX log_tool_call ON log(tool_call_id) WHERE tool_call_id IS NOT NULL;
	CREATE INDEX log_approval ON log(approval_id) WHERE approval_id IS NOT NULL;
	CREATE INDEX log_kind ON log(kind, seq) WHERE kind IN ('approval', 'checkpoint', 'outcome');`,

	// 3: shadow decisions, to find where a candidate policy set parts from the live one.
	`ALTER TABLE log ADD COLUMN shadow_decision TEXT GENERATED ALWAYS AS (json_extract(body, '$.shadow.decision')) VIRTUAL;
	CREATE INDEX log_shadow_diff ON log(seq) WHERE shadow_decision IS NOT NULL AND shadow_decision != decision;`,

	// 4: where each sink has shipped to. Not part of the chain: a cursor only
	// ever says "shipped", and a lost cursor ships again (at least once).
	`CREATE TABLE ship_cursors (
		sink    TEXT PRIMARY KEY,
		seq     INTEGER NOT NULL, -- the last row the sink acknowledged
		updated INTEGER NOT NULL  -- Unix nanoseconds
	);`,

	// 5: keys whose index entries scatter over many pages per commit move
	// to the provenance index, a separate file kept off the writer's path
	// (index.go). The generated columns stay: queries check rows with them.
	`DROP INDEX log_principal;
	DROP INDEX log_session;
	DROP INDEX log_task;
	DROP INDEX log_trace;
	DROP INDEX log_on_behalf_of;
	DROP INDEX log_credential;
	DROP INDEX log_tool_call;`,

	// 6: the Merkle tree's stored hashes (merkle.go): for each leaf (seq-1),
	// the hashes adding it completes. Never pruned.
	`CREATE TABLE merkle (
		leaf   INTEGER PRIMARY KEY,
		hashes BLOB NOT NULL
	);`,

	// 7: where each sink started (Cursors.Start): a sink with start: now
	// skips the rows before its first cursor, and says so here for as long
	// as the cursor lives. Cursors from before start existed shipped from
	// the oldest row.
	`ALTER TABLE ship_cursors ADD COLUMN start TEXT NOT NULL DEFAULT 'oldest'; -- oldest | now
	ALTER TABLE ship_cursors ADD COLUMN start_seq INTEGER NOT NULL DEFAULT 0; -- rows after this seq ship
	ALTER TABLE ship_cursors ADD COLUMN started INTEGER; -- Unix nanoseconds the sink was first seen; NULL before migration 7`,

	// 8: SQLite computes every generated column of a row as it inserts it,
	// a json_extract each, used or not. Keep only those an index reads
	// (wire.IndexedColumns: log_decision_id, log_parent, log_approval,
	// log_shadow_diff); queries read the others by path (fieldSQL).
	// Dropping a VIRTUAL column rewrites no row: bodies and hashes stay as
	// they are. SQLite refuses the drop of a column an index, view or
	// trigger uses, so this fails whole rather than break one.
	`ALTER TABLE log DROP COLUMN principal;
	ALTER TABLE log DROP COLUMN action;
	ALTER TABLE log DROP COLUMN resource;
	ALTER TABLE log DROP COLUMN policy_version;
	ALTER TABLE log DROP COLUMN session_id;
	ALTER TABLE log DROP COLUMN task_id;
	ALTER TABLE log DROP COLUMN trace_id;
	ALTER TABLE log DROP COLUMN classification;
	ALTER TABLE log DROP COLUMN on_behalf_of;
	ALTER TABLE log DROP COLUMN credential_id;
	ALTER TABLE log DROP COLUMN peer_uid;
	ALTER TABLE log DROP COLUMN tool_call_id;`,

	// 9: the five columns left (wire.IndexedColumns) become ordinary
	// columns the writer binds from the entry's Keys: SQLite computing
	// them parsed every body (1.5-2 KB) on insert, about 3 µs of the
	// writer's 23 µs of CPU a row (BenchmarkAppendGroup, rows=64). Verify checks every row's columns against
	// json_extract of its body, since the hash covers the body alone.
	// SQLite cannot turn a generated column into an ordinary one, so the
	// table is rebuilt as its documentation describes (lang_altertable.html,
	// "Making Other Kinds Of Table Schema Changes"): a new table, every row
	// copied with its columns read from the body once, the old table
	// dropped (its triggers and indexes with it; the DELETE a DROP TABLE
	// implies fires no trigger), the new one renamed, then every index and
	// both append-only triggers made again as they were. seq, kind, time,
	// body and hash are copied as stored, so the chain, the merkle table
	// and the checkpoints stay valid. Like every migration it runs in one
	// transaction: a failure leaves the log at version 8. It is a one-time
	// cost that grows with the log, paid at the first start after an
	// upgrade: every row read and written again (3.6 s for 100,000 rows,
	// 170 MB, on a shared 2-core machine), and disk for a second copy of
	// the table (in the WAL until the next checkpoint, then in the file,
	// whose freed pages later rows reuse). docs/architecture.md says so.
	`CREATE TABLE log_v9 (
		seq  INTEGER PRIMARY KEY,
		kind TEXT    NOT NULL,
		time INTEGER NOT NULL, -- Unix nanoseconds
		body TEXT    NOT NULL, -- JSON, hashed as stored
		hash BLOB    NOT NULL,
		decision_id        TEXT, -- json_extract(body, '$.decision_id')
		decision           TEXT, -- json_extract(body, '$.decision')
		parent_decision_id TEXT, -- json_extract(body, '$.request.parent_decision_id')
		approval_id        TEXT, -- json_extract(body, '$.request.approval')
		shadow_decision    TEXT  -- json_extract(body, '$.shadow.decision')
	);
	INSERT INTO log_v9(seq, kind, time, body, hash, decision_id, decision, parent_decision_id, approval_id, shadow_decision)
		SELECT seq, kind, time, body, hash,
			json_extract(body, '$.decision_id'), json_extract(body, '$.decision'),
			json_extract(body, '$.request.parent_decision_id'), json_extract(body, '$.request.approval'),
			json_extract(body, '$.shadow.decision')
		FROM log ORDER BY seq;
	DROP TABLE log;
	ALTER TABLE log_v9 RENAME TO log;
	CREATE INDEX log_time ON log(time);
	CREATE INDEX log_decision_id ON log(decision_id) WHERE decision_id IS NOT NULL;
	CREATE INDEX log_parent ON log(parent_decision_id) WHERE parent_decision_id IS NOT NULL;
	CREATE INDEX log_policy_load ON log(kind, seq) WHERE kind = 'policy_load';
	CREATE INDEX log_approval ON log(approval_id) WHERE approval_id IS NOT NULL;
	CREATE INDEX log_kind ON log(kind, seq) WHERE kind IN ('approval', 'checkpoint', 'outcome');
	CREATE INDEX log_shadow_diff ON log(seq) WHERE shadow_decision IS NOT NULL AND shadow_decision != decision;
	CREATE TRIGGER log_no_update BEFORE UPDATE ON log
		BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END;
	CREATE TRIGGER log_no_delete BEFORE DELETE ON log
		BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END;`,
}

// migrate brings the schema up to date: to version upTo if it is not 0
// (the tests' old logs), to the last migration otherwise. It runs on the
// write connection before the writer starts, so nothing else writes
// meanwhile.
func migrate(ctx context.Context, db *sql.DB, upTo int) error {
	want := len(migrations)
	if upTo > 0 && upTo < want {
		want = upTo
	}
	var have int
	if err := db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&have); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if have > want {
		return fmt.Errorf("database schema version %d is newer than this agentpdp (%d): upgrade agentpdp", have, want)
	}
	for i := have; i < want; i++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		// PRAGMA does not take parameters; i+1 is our own integer.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, i+1)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %d: commit: %w", i+1, err)
		}
	}
	return nil
}
