package main

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
)

// Issue 14: cutting off the log's tail, its last signed checkpoints
// included, passed log verify without --trusted-checkpoint. The writer's
// tail state file beside the database now catches it.
func TestCLI_LogVerifyChecksTheWritersTailState(t *testing.T) {
	dir := t.TempDir()
	keyFile, pubFile, priv := signingKeyIn(t, dir)
	db := filepath.Join(dir, "d.db")
	l, err := decisionlog.Open(t.Context(), db, decisionlog.Options{SigningKey: priv, CheckpointEvery: 10})
	must(t, err)
	for i := range 25 {
		body := fmt.Sprintf(`{"decision_id":"d-%d","decision":"allow","principal":"Agent::\"a\"","request":{"principal":{"type":"Agent","id":"a"}}}`, i)
		must(t, l.Append(t.Context(), &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: []byte(body)}))
	}
	must(t, l.Close(t.Context()))
	state := decisionlog.StatePath(db)
	pristine, err := os.ReadFile(state)
	must(t, err)

	code, out, stderr := runCLI(t, "log", "verify", "--db", db, "--pubkey", pubFile, "--signing-key", keyFile)
	if code != 0 || !strings.Contains(out, "tail state file (authenticated with the signing key) records seq") {
		t.Fatalf("untouched log: %d %s %s", code, out, stderr)
	}
	code, out, stderr = runCLI(t, "log", "verify", "--db", db, "--pubkey", pubFile)
	if code != 0 || !strings.Contains(out, "read but not authenticated") {
		t.Fatalf("untouched log, no --signing-key: %d %s %s", code, out, stderr)
	}

	// Cut back to the second-last checkpoint row: the log ends at a
	// signed checkpoint, and the chain and signatures still hold.
	h, err := sql.Open("sqlite3", "file:"+db)
	must(t, err)
	var last, cutTo int64
	must(t, h.QueryRow(`SELECT max(seq) FROM log`).Scan(&last))
	must(t, h.QueryRow(`SELECT seq FROM log WHERE kind = 'checkpoint' ORDER BY seq DESC LIMIT 1 OFFSET 1`).Scan(&cutTo))
	for _, s := range []string{`DROP TRIGGER log_no_delete`, fmt.Sprintf(`DELETE FROM log WHERE seq > %d`, cutTo)} {
		if _, err := h.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	h.Close()
	code, out, stderr = runCLI(t, "log", "verify", "--db", db, "--pubkey", pubFile)
	want := fmt.Sprintf("the log ends at seq %d but its writer's state file records seq %d: rows %d to %d were cut", cutTo, last, cutTo+1, last)
	if code != exitFail || !strings.Contains(stderr, "FAILED") || !strings.Contains(stderr, want) {
		t.Fatalf("cut tail: exit %d, stdout %s, stderr %s; want exit %d naming %q", code, out, stderr, exitFail, want)
	}

	// A state file forged to match the cut log fails with --signing-key.
	forged := strings.NewReplacer(fmt.Sprintf(`"seq":%d`, last), fmt.Sprintf(`"seq":%d`, cutTo),
		fmt.Sprintf(`"next_seq":%d`, last), fmt.Sprintf(`"next_seq":%d`, cutTo)).Replace(string(pristine))
	if forged == string(pristine) {
		t.Fatalf("state file not as expected: %s", pristine)
	}
	must(t, os.WriteFile(state, []byte(forged), 0o600))
	code, out, stderr = runCLI(t, "log", "verify", "--db", db, "--pubkey", pubFile, "--signing-key", keyFile)
	if code != exitFail || !strings.Contains(stderr, "MAC does not verify") {
		t.Fatalf("forged state file: exit %d, stdout %s, stderr %s", code, out, stderr)
	}

	// No state file (a copy of the db alone): a warning, not a failure.
	must(t, os.Remove(state))
	code, out, stderr = runCLI(t, "log", "verify", "--db", db, "--pubkey", pubFile)
	if code != 0 || !strings.Contains(out, "WARNING: no tail state file") {
		t.Fatalf("no state file: %d %s %s", code, out, stderr)
	}
}

// A running writer's tail state file records the head its last commit
// started from, so verify beside a live daemon read "records seq 10" next
// to "ok: 11 rows" with nothing saying why. It now names the rows past
// the file and why they are there; a closed log has none.
func TestCLI_LogVerifyExplainsRowsPastTheTailState(t *testing.T) {
	dir := t.TempDir()
	keyFile, pubFile, priv := signingKeyIn(t, dir)
	db := filepath.Join(dir, "d.db")
	l, err := decisionlog.Open(t.Context(), db, decisionlog.Options{SigningKey: priv})
	must(t, err)
	for i := range 3 {
		body := fmt.Sprintf(`{"decision_id":"d-%d","decision":"allow","principal":"Agent::\"a\"","request":{"principal":{"type":"Agent","id":"a"}}}`, i)
		must(t, l.Append(t.Context(), &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: []byte(body)}))
	}
	for _, args := range [][]string{{"--signing-key", keyFile}, nil} {
		code, out, stderr := runCLI(t, append([]string{"log", "verify", "--db", db, "--pubkey", pubFile}, args...)...)
		if code != 0 || !strings.Contains(out, "ok: 3 rows") || !strings.Contains(out, "records seq 2: the log reaches it with the same head") ||
			!strings.Contains(out, "; seq 3 came after it: the writer writes the file before each commit") {
			t.Fatalf("live log %v: exit %d\n%s%s", args, code, out, stderr)
		}
	}
	must(t, l.Close(t.Context()))
	code, out, stderr := runCLI(t, "log", "verify", "--db", db, "--pubkey", pubFile, "--signing-key", keyFile)
	if code != 0 || strings.Contains(out, "came after it") {
		t.Fatalf("closed log: exit %d\n%s%s", code, out, stderr)
	}
}
