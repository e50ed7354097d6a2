package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/internal/pdptest"
)

// The log table stores decision_id and the other lookup columns beside the
// body, and the hash covers the body alone: a column pointed at another
// row's decision (the triggers dropped, the chain untouched) must not
// misdirect log show, and log verify fails naming the row and the column.
func TestCLI_LogVerifyChecksTheColumns(t *testing.T) {
	dir := t.TempDir()
	_, pubFile, priv := signingKeyIn(t, dir)
	db := filepath.Join(dir, "d.db")
	l, err := decisionlog.Open(t.Context(), db, decisionlog.Options{SigningKey: priv})
	must(t, err)
	for i := range 5 {
		body := fmt.Sprintf(`{"decision_id":"d-%d","decision":"allow","principal":"Agent::\"a\"","request":{"principal":{"type":"Agent","id":"a"},"action":{"type":"Action","id":"go"},"resource":{"type":"Tool","id":"t"}}}`, i)
		must(t, l.Append(t.Context(), &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: []byte(body)}))
	}
	must(t, l.Close(t.Context()))
	if code, out, stderr := runCLI(t, "log", "verify", "--db", db, "--pubkey", pubFile); code != 0 {
		t.Fatalf("untouched log: %d %s %s", code, out, stderr)
	}

	pdptest.ChangeLogBehindItsTriggers(t, db, `UPDATE log SET decision_id = 'd-4' WHERE seq = 2`, `UPDATE log SET decision_id = NULL WHERE seq = 5`)
	// log show finds d-4's candidates by the column and answers by the
	// body: never d-1's row, and d-4's own is hidden until verify.
	if code, out, stderr := runCLI(t, "log", "show", "--db", db, "d-4"); code == 0 || strings.Contains(out, "d-1") || !strings.Contains(stderr, `no decision with id "d-4"`) {
		t.Errorf("log show d-4 after the tampering: exit %d\n%s%s\nwant not found, and never the row of d-1", code, out, stderr)
	}
	code, out, stderr := runCLI(t, "log", "verify", "--db", db, "--pubkey", pubFile)
	want := `seq 2: column decision_id holds 'd-4' but the body the hash covers holds 'd-1' at $.decision_id`
	if code != exitFail || !strings.Contains(stderr, "FAILED") || !strings.Contains(stderr, want) {
		t.Fatalf("tampered column: exit %d, stdout %s, stderr %s; want exit %d naming %q", code, out, stderr, exitFail, want)
	}
}
