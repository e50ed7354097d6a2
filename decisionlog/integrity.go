package decisionlog

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/agentpdp/agentpdp/internal/plural"
)

// The append-only guards, as every writer (re)creates them. Whitespace is
// not significant when they are compared with what the database holds.
var appendOnlyTriggers = map[string]string{
	"log_no_update": `CREATE TRIGGER log_no_update BEFORE UPDATE ON log BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END`,
	"log_no_delete": `CREATE TRIGGER log_no_delete BEFORE DELETE ON log BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END`,
}

// unguardedTriggers names the append-only triggers missing or not as
// appendOnlyTriggers writes them.
func unguardedTriggers(ctx context.Context, q queryRower) ([]string, error) {
	var out []string
	for _, name := range []string{"log_no_update", "log_no_delete"} {
		var have string
		err := q.QueryRowContext(ctx, `SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?`, name).Scan(&have)
		if err == nil && strings.Join(strings.Fields(have), " ") == appendOnlyTriggers[name] {
			continue
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("check trigger %s: %w", name, err)
		}
		out = append(out, name)
	}
	return out, nil
}

// restoreTriggers puts back any append-only trigger that is missing or not
// as written, and records an integrity row saying which, naming too those
// in before: triggers found missing before the migrations ran, which one
// that rebuilds the table (9) makes again.
func (l *Log) restoreTriggers(ctx context.Context, before []string) error {
	missing, err := unguardedTriggers(ctx, l.db)
	if err != nil {
		return err
	}
	for _, name := range missing {
		tx, err := l.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("restore trigger %s: %w", name, err)
		}
		_, err = tx.ExecContext(ctx, `DROP TRIGGER IF EXISTS `+name)
		if err == nil {
			_, err = tx.ExecContext(ctx, appendOnlyTriggers[name])
		}
		if err == nil {
			err = tx.Commit()
		}
		if err != nil {
			tx.Rollback()
			return fmt.Errorf("restore trigger %s: %w", name, err)
		}
	}
	var restored []string
	for _, name := range []string{"log_no_update", "log_no_delete"} {
		if slices.Contains(missing, name) || slices.Contains(before, name) {
			restored = append(restored, name)
		}
	}
	if len(restored) > 0 {
		l.logger.Warn("decision log: append-only triggers were missing or altered; restored them", "triggers", restored)
		l.startRows = append(l.startRows, integrityRow(IntegrityRecord{Event: "triggers_restored", Triggers: restored}))
	}
	return nil
}

func integrityRow(r IntegrityRecord) *Entry {
	body, _ := json.Marshal(r)
	return &Entry{Kind: KindIntegrity, Time: time.Now(), Body: body, Keys: &Keys{}}
}

// TailError says the log does not end where its writer left it: rows were
// removed, changed or added by something else while it was stopped.
type TailError struct {
	Problem string
}

func (e *TailError) Error() string {
	return "the log's tail is not what this writer left: " + e.Problem +
		"; run agentpdp log verify, and start with --accept-tail only if you accept these rows (an integrity row records it)"
}

// checkTail compares the log's head with the tail state the writer left.
func (l *Log) checkTail(ctx context.Context) error {
	st, err := l.state.read()
	problem := ""
	switch {
	case err != nil:
		problem = err.Error()
	case st == nil && l.seq == 0:
		return nil // a new log
	case st == nil:
		problem = fmt.Sprintf("the log holds %s but there is no tail state (%s) saying this writer wrote %s", plural.Count(l.seq, "row", "rows"), StatePath(l.path), plural.Word(l.seq, "it", "them"))
	case st.Origin != l.origin:
		problem = fmt.Sprintf("the tail state is of log %s, not %s", st.Origin, l.origin)
	case l.seq == st.Seq && hexHead(l.head) == st.Head, l.seq == st.NextSeq && hexHead(l.head) == st.NextHead:
		return nil
	default:
		problem = l.tailProblem(ctx, st)
	}
	if !l.opts.AcceptTail {
		return &TailError{Problem: problem}
	}
	l.logger.Warn("decision log: accepting a tail this writer did not write, as asked (--accept-tail)", "problem", problem)
	rec := IntegrityRecord{Event: "tail_accepted", Problem: problem, FoundSeq: l.seq, FoundHead: hexHead(l.head)}
	if st != nil {
		rec.ExpectedSeq, rec.ExpectedHead = st.NextSeq, st.NextHead
	}
	l.startRows = append(l.startRows, integrityRow(rec))
	return nil
}

// tailProblem says how the log differs from the state.
func (l *Log) tailProblem(ctx context.Context, st *tailState) string {
	if l.seq < st.Seq {
		return fmt.Sprintf("the log ends at seq %d, but this writer wrote up to seq %d: rows were removed", l.seq, st.Seq)
	}
	var h []byte
	err := l.db.QueryRowContext(ctx, `SELECT hash FROM log WHERE seq = ?`, st.Seq).Scan(&h)
	switch {
	case st.Seq > 0 && err != nil:
		return fmt.Sprintf("row %d, the last this writer committed, cannot be read: %v", st.Seq, err)
	case st.Seq > 0 && hex.EncodeToString(h) != st.Head:
		return fmt.Sprintf("row %d, the last this writer committed, has another hash: the log was rewritten", st.Seq)
	case l.seq < st.NextSeq:
		return fmt.Sprintf("the log ends at seq %d, inside this writer's last commit (seq %d to %d): rows were removed", l.seq, st.Seq+1, st.NextSeq)
	}
	if err := l.db.QueryRowContext(ctx, `SELECT hash FROM log WHERE seq = ?`, st.NextSeq).Scan(&h); err == nil && hex.EncodeToString(h) == st.NextHead {
		return fmt.Sprintf("rows %d to %d were appended by something other than this writer", st.NextSeq+1, l.seq)
	}
	return fmt.Sprintf("rows after seq %d were changed or appended by something other than this writer (the log ends at seq %d)", st.Seq, l.seq)
}
