package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/agentpdp/agentpdp/pdp/client"
)

// TestBench loads a daemon with the built-in mix: every answer is counted
// under the decision it carried, the mix gives all three, and the daemon's
// own figures are read. Speed is not asserted: that is what bench prints.
func TestBench(t *testing.T) {
	d := newDaemonDir(t)
	// The built-in mix describes its agents and tools inline.
	appendConfig(t, d, "request_entities: trusted\n")
	d.start()
	code, stdout, stderr := runCLI(t, "bench", "--socket", d.sock(), "--admin-socket", d.asock(), "-c", "4", "--warmup", "200ms", "-d", "1s", "--json")
	if code != 0 {
		t.Fatalf("bench: exit %d\n%s", code, stderr)
	}
	var res benchResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	if len(res.Errors) != 0 || res.Decisions == 0 {
		t.Fatalf("%d decisions, errors %v", res.Decisions, res.Errors)
	}
	sum := 0
	for _, answer := range []string{"allow", "deny", "step_up"} {
		if res.ByDecision[answer] == 0 {
			t.Errorf("the built-in mix gave no %s: %v", answer, res.ByDecision)
		}
		sum += res.ByDecision[answer]
	}
	if sum != res.Decisions || len(res.ByDecision) != 3 {
		t.Errorf("answers by decision %v do not add up to %d decisions", res.ByDecision, res.Decisions)
	}
	if !(0 < res.P50 && res.P50 <= res.P90 && res.P90 <= res.P99 && res.P99 <= res.P999 && res.P999 <= res.Max) {
		t.Errorf("percentiles out of order: %+v", res)
	}
	if res.ServerCPU <= 0 || res.ServerPeakRSS <= 0 || res.LogBytesPerRow <= 0 {
		t.Errorf("daemon figures missing: %+v", res)
	}

	// The rows are in the log: bench's decisions are real ones.
	code, stdout, _ = runCLI(t, "log", "stats", "--db", d.db(), "--json")
	var st struct {
		Decisions int `json:"decisions"`
	}
	if err := json.Unmarshal([]byte(stdout), &st); code != 0 || err != nil || st.Decisions < res.Decisions {
		t.Errorf("log stats: exit %d, %d decisions (%v), want at least the %d bench counted", code, st.Decisions, err, res.Decisions)
	}
}

// TestBench_RequestsFile cycles a JSONL file's requests, and names the
// line of one that the daemon would refuse, before sending anything.
func TestBench_RequestsFile(t *testing.T) {
	d := newDaemonDir(t)
	d.start()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.jsonl")
	line := `{"principal":"Agent::\"billing-bot\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"sql.query\""}`
	if err := os.WriteFile(good, []byte(line+"\n\n"+line+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "bench", "--socket", d.sock(), "--admin-socket", "", "-c", "2", "--warmup", "0s", "-d", "500ms", "--requests", good, "--json")
	var res benchResult
	if code != 0 || json.Unmarshal([]byte(stdout), &res) != nil || res.ByDecision["allow"] != res.Decisions || res.Decisions == 0 {
		t.Fatalf("exit %d, %+v\n%s", code, res, stderr)
	}

	bad := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(bad, []byte(line+"\n"+`{"principal":"Agent::\"x\""}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI(t, "bench", "--socket", d.sock(), "-c", "1", "-d", "1s", "--requests", bad)
	if code != exitFail || !strings.Contains(stderr, "bad.jsonl:2") || !strings.Contains(stderr, "action") {
		t.Errorf("got exit %d, %q; want 1 naming bad.jsonl:2 and the missing action", code, stderr)
	}
}

// bench reports on the daemon it loads (issue 17: with --socket X it read
// another daemon's admin socket, or none, and printed figures of neither):
// the admin socket is found beside --socket and checked to be the same
// process; another daemon's is refused. --fail-on-error exits 1 on errors.
func TestBench_SameDaemonAndFailOnError(t *testing.T) {
	d := newDaemonDir(t)
	appendConfig(t, d, "request_entities: trusted\n") // the built-in mix describes its agents inline
	d.start()
	other := newDaemonDir(t)
	other.start()
	code, stdout, stderr := runCLI(t, "bench", "--socket", d.sock(), "-c", "2", "--warmup", "100ms", "-d", "300ms", "--json")
	var res benchResult
	if code != 0 || json.Unmarshal([]byte(stdout), &res) != nil || res.ServerPeakRSS <= 0 {
		t.Errorf("admin socket derived from --socket: exit %d %s %s", code, stdout, stderr)
	}
	code, _, stderr = runCLI(t, "bench", "--socket", d.sock(), "--admin-socket", other.asock(), "-d", "300ms")
	if code != exitUsage || !strings.Contains(stderr, "give the admin socket of the daemon on "+d.sock()) {
		t.Errorf("another daemon's admin socket: exit %d %s", code, stderr)
	}
	lone := filepath.Join(t.TempDir(), "x.sock")
	os.Symlink(d.sock(), lone)
	if code, _, stderr := runCLI(t, "bench", "--socket", lone, "-d", "300ms"); code != exitUsage || !strings.Contains(stderr, "give the same daemon's --admin-socket") {
		t.Errorf("no admin socket beside: exit %d %s", code, stderr)
	}
	// A request the daemon refuses (an entity given twice): errors counted,
	// and exit 1 when asked.
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	os.WriteFile(bad, []byte(`{"principal":"Agent::\"a\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"t\"","entities":[{"uid":{"type":"Agent","id":"a"},"attrs":{},"parents":[]},{"uid":{"type":"Agent","id":"a"},"attrs":{},"parents":[]}]}`+"\n"+billingRead+"\n"), 0o644)
	code, stdout, stderr = runCLI(t, "bench", "--socket", d.sock(), "--requests", bad, "-c", "1", "--warmup", "0s", "-d", "300ms", "--fail-on-error", "--json")
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || len(res.Errors) == 0 || code != exitFail {
		t.Errorf("--fail-on-error with %v errors: exit %d %s", res.Errors, code, stderr)
	}
}

// A daemon with the default config (request_entities: unknown_only) refuses
// the built-in mix's inline entities (issue 17: bench then printed a Go map
// of 50 messages, then 10 of them, one per agent): errors are counted by
// kind (the HTTP status, and the message with its quoted ids and numbers
// generalised), each kind once with its count and one example, and a hint
// says how to bench it.
func TestBench_RefusedEntitiesGroupedWithHint(t *testing.T) {
	d := newDaemonDir(t)
	d.start()
	code, stdout, stderr := runCLI(t, "bench", "--socket", d.sock(), "-c", "2", "--warmup", "0s", "-d", "300ms")
	if code != exitFail {
		t.Fatalf("exit %d, want %d\n%s%s", code, exitFail, stdout, stderr)
	}
	if strings.Contains(stderr, "map[") {
		t.Errorf("errors printed as a Go map:\n%s", stderr)
	}
	kind := `400 Bad Request: entities[N]: Agent::"…" is the principal; only a caller whose callers rule has define_principal may describe it`
	example := regexp.MustCompile(`(?m)^error ×\d+: ` + regexp.QuoteMeta(kind) + "\n" +
		`  e\.g\. 400 Bad Request: entities\[0\]: Agent::"agent-\d+" is the principal; only a caller whose callers rule has define_principal may describe it\n`)
	if strings.Count(stderr, "error ×") != 1 || !example.MatchString(stderr) || strings.Contains(stderr, "more kinds") {
		t.Errorf("want one kind of error with an example:\n%s", stderr)
	}
	if strings.Count(stderr, "hint:") != 1 || !strings.Contains(stderr, "--config examples/bench.yaml (request_entities: trusted)") || !strings.Contains(stderr, "--requests FILE") {
		t.Errorf("want one hint naming examples/bench.yaml and --requests:\n%s", stderr)
	}
}

func TestErrorKind(t *testing.T) {
	for _, tc := range []struct {
		err       error
		msg, kind string
	}{
		{&client.Error{Status: 400, Message: `entities[0]: Agent::"agent-7" is the principal`},
			`400 Bad Request: entities[0]: Agent::"agent-7" is the principal`, `400 Bad Request: entities[N]: Agent::"…" is the principal`},
		{&client.Error{Status: 400, Message: `entities[12]: Agent::"a \"quoted\" id" is the principal`},
			`400 Bad Request: entities[12]: Agent::"a \"quoted\" id" is the principal`, `400 Bad Request: entities[N]: Agent::"…" is the principal`},
		{&client.Error{Status: 503, Message: "the decision log is unavailable"},
			"503 Service Unavailable: the decision log is unavailable", "503 Service Unavailable: the decision log is unavailable"},
		{errors.New(`answer 200 without a decision: {"x":1}`), `answer 200 without a decision: {"x":1}`, `answer N without a decision: {"…":N}`},
	} {
		msg, kind := errorKind(tc.err)
		if msg != tc.msg || kind != tc.kind {
			t.Errorf("errorKind(%v):\n got %q, %q\nwant %q, %q", tc.err, msg, kind, tc.msg, tc.kind)
		}
	}
}
