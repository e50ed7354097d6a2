package main

import (
	"encoding/csv"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// Values an agent chooses reach a reviewer's spreadsheet: a cell that
// begins like a formula is defused (issue 18, CSV injection per OWASP).
// Times are shown in RFC 3339 with an offset, UTC unless --local, and
// --since takes back what was shown.
func TestLogExport_CSVInjectionAndTimes(t *testing.T) {
	d := newDaemonDir(t)
	d.start()
	agent := client.New(d.sock())
	formulas := []string{"=1+2", "@SUM(1,2)", "-3+4", "\t=5+6", "+1", "\r=7"}
	for _, s := range formulas {
		_, err := agent.Authorize(t.Context(), &wire.Request{
			Principal: wire.EntityRef{Type: "Agent", ID: "billing-bot"}, Action: wire.EntityRef{Type: "Action", ID: "invoke_tool"},
			Resource: wire.EntityRef{Type: "Tool", ID: "sql.query"}, SessionID: s, TaskID: "plain",
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.done

	_, out, stderr := runCLI(t, "log", "export", "--db", d.db(), "--format", "csv", "--kind", "decision")
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("%v: %s %s", err, out, stderr)
	}
	col := slices.Index(rows[0], "session_id")
	task := slices.Index(rows[0], "task_id")
	var got []string
	for _, r := range rows[1:] {
		got = append(got, r[col])
		if r[task] != "plain" {
			t.Errorf("a plain value changed: %q", r[task])
		}
	}
	for i, s := range formulas {
		if got[i] != "'"+s {
			t.Errorf("session_id %q exported as %q, want it quoted with a leading '", s, got[i])
		}
	}

	// Shown in UTC with its offset; what tail shows, --since accepts.
	_, out, _ = runCLI(t, "log", "tail", "--db", d.db(), "-n", "2")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	shown := strings.Fields(lines[0])[1]
	at, err := time.Parse(time.RFC3339Nano, shown)
	if err != nil || !strings.HasSuffix(shown, "Z") {
		t.Fatalf("tail shows %q, want an RFC 3339 time in UTC: %v", shown, err)
	}
	code, out, stderr := runCLI(t, "log", "query", "--db", d.db(), "--since", shown)
	if code != 0 || !strings.Contains(out, shown[:19]) {
		t.Errorf("--since %s (as shown): exit %d %q %q", shown, code, out, stderr)
	}
	_, out, _ = runCLI(t, "log", "query", "--db", d.db())
	if !strings.Contains(out, shown) {
		t.Errorf("query shows times as tail does (%s):\n%s", shown, out)
	}

	// --local: the machine's zone, with its offset, the same instant.
	saved := time.Local
	time.Local = time.FixedZone("X", -(3*3600 + 30*60))
	defer func() { time.Local = saved }()
	_, out, _ = runCLI(t, "log", "tail", "--db", d.db(), "-n", "2", "--local")
	local := strings.Fields(strings.Split(out, "\n")[0])[1]
	lt, err := time.Parse(time.RFC3339Nano, local)
	if err != nil || !strings.HasSuffix(local, "-03:30") || !lt.Equal(at) {
		t.Errorf("--local shows %q for %s: %v", local, shown, err)
	}
	if code, _, stderr := runCLI(t, "log", "query", "--db", d.db(), "--since", local); code != 0 {
		t.Errorf("--since %s (as --local shows it): exit %d %s", local, code, stderr)
	}
}
