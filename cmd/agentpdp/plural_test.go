package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
)

// Issue 17: log verify said "1 checkpoints". A count of one is singular
// in every command's output.
func TestCLI_CountsOfOneAreSingular(t *testing.T) {
	dir := t.TempDir()
	_, pubFile, priv := signingKeyIn(t, dir)
	db := filepath.Join(dir, "d.db")
	l, err := decisionlog.Open(t.Context(), db, decisionlog.Options{SigningKey: priv})
	must(t, err)
	must(t, l.Append(t.Context(), &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(),
		Body: []byte(`{"decision_id":"d-1","decision":"allow","principal":"Agent::\"a\"","request":{"principal":{"type":"Agent","id":"a"}}}`)}))
	must(t, l.Close(t.Context())) // signs one checkpoint over the decision

	code, out, stderr := runCLI(t, "log", "verify", "--db", db, "--pubkey", pubFile)
	if code != 0 || !strings.Contains(out, "ok: 2 rows (seq 1 to 2)") || !strings.Contains(out, "\n1 checkpoint, every signature verified") {
		t.Errorf("log verify: %d\n%s%s", code, out, stderr)
	}

	// One row shipped.
	one := filepath.Join(dir, "one.db")
	l, err = decisionlog.Open(t.Context(), one, decisionlog.Options{})
	must(t, err)
	must(t, l.Append(t.Context(), &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: []byte(`{"decision":"allow"}`)}))
	must(t, l.Close(t.Context()))
	config := filepath.Join(dir, "c.yaml")
	must(t, os.WriteFile(config, []byte(fmt.Sprintf("db: %s\nsinks:\n  - {name: archive, type: file, path: %s}\n", one, filepath.Join(dir, "ship.jsonl"))), 0o644))
	code, out, stderr = runCLI(t, "ship", "--config", config, "--once")
	if code != 0 || out != "archive: shipped to seq 1 (1 row this run)\n" {
		t.Errorf("ship --once: %d %q %s", code, out, stderr)
	}

	// One policy in one file.
	policies := filepath.Join(dir, "policies")
	must(t, os.MkdirAll(policies, 0o755))
	must(t, os.WriteFile(filepath.Join(policies, "a.cedar"), []byte("permit (principal, action, resource);\n"), 0o644))
	code, out, stderr = runCLI(t, "validate", "--policies", policies)
	if code != 0 || !strings.HasPrefix(out, "ok: 1 policy in 1 file, no schema, 0 warnings;") {
		t.Errorf("validate: %d %q %s", code, out, stderr)
	}
}
