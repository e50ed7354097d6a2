package main

import (
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// loggedByDaemon runs the daemon under load for a while and stops it, and
// returns the decisions it answered.
func loggedByDaemon(t *testing.T) (*daemon, []*wire.Decision) {
	t.Helper()
	d := newDaemonDir(t)
	d.start()
	finish := startLoad(t, d.sock(), 8)
	// Load until the log holds enough decisions, however slow the machine:
	// a fixed time answered 49 under a loaded CI.
	waitLogged(t, d.db(), 60, time.Minute)
	answered := finish()
	d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.done
	if len(answered) < 50 {
		t.Fatalf("only %d decisions", len(answered))
	}
	return d, answered
}

// waitLogged polls the log, read-only as any reader may, until it holds at
// least n decisions or the deadline passes.
func waitLogged(t *testing.T, db string, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var count int
		conn, err := sql.Open("sqlite3", "file:"+db+"?mode=ro")
		if err == nil {
			err = conn.QueryRow(`SELECT count(*) FROM log WHERE kind = 'decision'`).Scan(&count)
			conn.Close()
		}
		if err == nil && count >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log holds %d decisions after %s, want %d (last error: %v)", count, within, n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestReplay_ReproducesTheDaemonsLog(t *testing.T) {
	d, answered := loggedByDaemon(t)
	code, out, stderr := runCLI(t, "replay", "--db", d.db(), "--json")
	if code != 0 {
		t.Fatalf("exit %d %s %s", code, out, stderr)
	}
	var rep pdp.ReplayReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Decisions != len(answered) || rep.Reproduced != len(answered) || rep.Changed != 0 || len(rep.Unverifiable) != 0 {
		t.Errorf("replay of %d answered: %+v", len(answered), rep)
	}

	// Alter one stored decision, as someone covering tracks would.
	victim := answered[len(answered)/2]
	flipped := wire.Allow
	if victim.Decision == wire.Allow {
		flipped = wire.Deny
	}
	pdptest.ChangeLogBehindItsTriggers(t, d.db(),
		`UPDATE log SET body = json_set(body, '`+wire.FieldDecision.Path+`', '`+string(flipped)+`') WHERE seq = `+itoa(int(victim.Seq)))
	code, out, _ = runCLI(t, "replay", "--db", d.db())
	if code != exitFail || !strings.Contains(out, "1 DID NOT REPRODUCE") || !strings.Contains(out, victim.DecisionID) {
		t.Errorf("altered row: exit %d\n%s", code, out)
	}
}

func TestReplay_Impact(t *testing.T) {
	d, answered := loggedByDaemon(t)
	// The proposal: freeze the SQL tool. Exactly the sql.query calls that
	// were not already denied, as the log counts them, flip to deny.
	if len(answered) == 0 {
		t.Fatal("nothing answered")
	}
	count := func(decision string) int {
		_, out, _ := runCLI(t, "log", "query", "--db", d.db(), "--resource", "sql.query", "--decision", decision, "--limit", "10000", "--json")
		if out = strings.TrimSpace(out); out == "" {
			return 0
		}
		return strings.Count(out, "\n") + 1
	}
	allowed, stepUps := count(string(wire.Allow)), count(string(wire.StepUp))
	if allowed == 0 || stepUps == 0 {
		t.Fatalf("the load made %d allowed and %d step_up sql.query decisions", allowed, stepUps)
	}
	proposal := t.TempDir()
	if err := os.CopyFS(proposal, os.DirFS(filepath.Join(d.dir, "policies"))); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(proposal, "freeze.cedar"), `@id("sql-freeze") forbid (principal, action, resource == Tool::"sql.query");`)
	code, out, stderr := runCLI(t, "replay", "--db", d.db(), "--policies", proposal, "--json")
	if code != 0 {
		t.Fatalf("exit %d %s", code, stderr)
	}
	var rep pdp.ReplayReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Changed != allowed+stepUps || rep.Flips["allow→deny"] != allowed || rep.Flips["step_up→deny"] != stepUps || len(rep.Flips) != 2 ||
		rep.ByPolicy["sql-freeze"] != allowed+stepUps || len(rep.Examples["allow→deny"]) == 0 {
		t.Errorf("want %d allow→deny and %d step_up→deny, all by sql-freeze; got %+v", allowed, stepUps, rep)
	}
	if code, _, _ := runCLI(t, "replay", "--db", d.db(), "--policies", proposal, "--fail-on-change"); code != exitFail {
		t.Errorf("--fail-on-change: exit %d", code)
	}
	if code, _, _ := runCLI(t, "replay", "--db", d.db(), "--policies", filepath.Join(d.dir, "policies"), "--fail-on-change"); code != 0 {
		t.Errorf("the serving policies change nothing: exit %d", code)
	}
}

// TestServe_ShadowPolicies: a proposal ships first in shadow mode; the
// answer never changes, and log query --shadow-diff shows where it would.
func TestServe_ShadowPolicies(t *testing.T) {
	d := newDaemonDir(t)
	shadow := filepath.Join(d.dir, "proposal")
	if err := os.CopyFS(shadow, os.DirFS(filepath.Join(d.dir, "policies"))); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(shadow, "freeze.cedar"), `@id("sql-freeze") forbid (principal, action, resource == Tool::"sql.query");`)
	f, err := os.OpenFile(d.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("shadow_policies: " + shadow + "\n")
	f.Close()
	d.start()
	cl := client.New(d.sock())
	for _, tool := range []string{"sql.query", "web.search"} {
		dec, err := cl.Authorize(t.Context(), &wire.Request{Principal: wire.EntityRef{Type: "Agent", ID: "billing-bot"},
			Action: wire.EntityRef{Type: "Action", ID: "invoke_tool"}, Resource: wire.EntityRef{Type: "Tool", ID: tool}})
		if err != nil || dec.Decision != wire.Allow {
			t.Fatalf("%s: %v %v", tool, dec, err)
		}
	}
	code, out, _ := runCLI(t, "log", "query", "--db", d.db(), "--shadow-diff")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.Contains(lines[0], "SHADOW") || !strings.Contains(lines[1], "sql.query") || !strings.Contains(lines[1], "sql-freeze") {
		t.Errorf("shadow diff:\n%s", out)
	}
}

// Decisions whose policy load is gone cannot be replayed: replay says so
// and exits 1, and log prune never causes it (it keeps the loads that
// retained decisions refer to).
func TestReplay_UnreplayableExitsOne(t *testing.T) {
	d := newDaemonDir(t)
	appendConfig(t, d, "checkpoints: {every_rows: 20}\n")
	d.start()
	// Enough decisions for three checkpoints, however slow the machine:
	// prune needs a signed checkpoint among the rows it may delete.
	for n := 0; n < 60; {
		finish := startLoad(t, d.sock(), 4)
		time.Sleep(300 * time.Millisecond)
		n += len(finish())
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.done
	key := filepath.Join(d.dir, "var", "signing.key")
	code, out, stderr := runCLI(t, "log", "prune", "--config", d.config, "--max-rows", "5", "--signing-key", key)
	if code != 0 || !strings.Contains(out, "kept 1 policy load that") {
		t.Fatalf("log prune: %d %s %s", code, out, stderr)
	}
	if code, out, stderr := runCLI(t, "replay", "--db", d.db()); code != 0 {
		t.Fatalf("replay after pruning: %d %s %s", code, out, stderr)
	}
	db, err := sql.Open("sqlite3", "file:"+d.db())
	must(t, err)
	_, err = db.Exec(`DROP TRIGGER log_no_delete; DELETE FROM log WHERE kind = 'policy_load'`)
	db.Close()
	must(t, err)
	code, out, _ = runCLI(t, "replay", "--db", d.db())
	if code != exitFail || !strings.Contains(out, "could not be replayed") {
		t.Errorf("replay without the policy loads: %d %s", code, out)
	}
}
