package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/agentpdp/agentpdp/internal/cedarcorpus"
)

const billingRead = `{"principal":"Agent::\"billing-bot\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"sql.query\""}`

func TestCLI_UsageErrorsExit2(t *testing.T) {
	tests := [][]string{
		{},
		{"nonsense"},
		{"serve", "--no-such-flag"},
		{"serve", "extra-arg"},
		{"check", "--request", billingRead},
		{"check", "--policies", "../../policies"},
		{"check", "--policies", "../../policies", "--request", "{}", "--requests", "-"},
		{"validate"},
		{"log"},
		{"log", "query", "--limit", "many"},
		{"log", "query", "--since", "yesterday"},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, _, stderr := runCLI(t, args...)
			if code != exitUsage || !strings.Contains(stderr, "agentpdp") {
				t.Errorf("got exit %d %q, want 2 with a message", code, stderr)
			}
		})
	}
}

func TestCLI_Check(t *testing.T) {
	code, out, stderr := runCLI(t, "check", "--policies", "../../policies", "--request", billingRead)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var d struct {
		Decision   string `json:"decision"`
		DecisionID string `json:"decision_id"`
		Seq        int64  `json:"seq"`
		Reasons    []struct {
			Policy string `json:"policy"`
			File   string `json:"file"`
			Line   int    `json:"line"`
		} `json:"reasons"`
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if d.Decision != "allow" || d.Reasons[0].Policy != "agents-may-invoke-tools" || !strings.HasSuffix(d.Reasons[0].File, "agents.cedar") || d.Reasons[0].Line == 0 {
		t.Errorf("decision: %s", out)
	}
	if d.DecisionID != "" || d.Seq != 0 {
		t.Errorf("check logs nothing, so it has no id or seq: %s", out)
	}
}

func TestCLI_CheckRequestsFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "reqs.jsonl")
	lines := []string{
		billingRead,
		`{"principal":"Agent::\"deploy-bot\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"k8s.apply\""}`,
		`{"principal":"Agent::billing-bot"}`,
		``,
		`{"principal":"Agent::\"scraper\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"web.search\""}`,
	}
	if err := os.WriteFile(f, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCLI(t, "check", "--policies", "../../policies", "--requests", f)
	if code != exitFail {
		t.Errorf("a bad line must fail the run: exit %d", code)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		if d, ok := m["decision"].(string); ok {
			got = append(got, d)
		} else {
			got = append(got, "error@"+strings.Split(m["error"].(string), ":")[0]+"@line"+string(rune('0'+int(m["line"].(float64)))))
		}
	}
	want := []string{"allow", "step_up", "error@bad request@line3", "deny"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestCLI_Validate(t *testing.T) {
	code, out, _ := runCLI(t, "validate", "--policies", "../../policies")
	if code != 0 || !strings.Contains(out, "validated against the schema") {
		t.Errorf("default pack: exit %d %s", code, out)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.cedar"), []byte("permit (principal, action, resource);\nforbid (principal action, resource);"), 0o644)
	os.WriteFile(filepath.Join(dir, "s.cedarschema"), []byte("entity A;"), 0o644)
	code, _, stderr := runCLI(t, "validate", "--policies", dir)
	if code != exitFail || !strings.Contains(stderr, filepath.ToSlash(dir)+"/a.cedar:2:") {
		t.Errorf("got exit %d %q, want 1 with file:line:col", code, stderr)
	}
	warn := t.TempDir()
	os.WriteFile(filepath.Join(warn, "a.cedar"), []byte("@id(\"never\")\npermit (principal, action, resource) when { false };"), 0o644)
	if code, out, stderr := runCLI(t, "validate", "--policies", warn); code != 0 || !strings.Contains(stderr, "a.cedar:1:1: warning: permit never can never apply") || !strings.Contains(out, "1 warning;") {
		t.Errorf("warnings: exit %d %q %q", code, out, stderr)
	}
	if code, _, _ := runCLI(t, "validate", "--policies", warn, "--validation", "lenient"); code != exitUsage {
		t.Errorf("bad --validation: exit %d", code)
	}
	code, out, _ = runCLI(t, "validate", "--policies", dir, "--json")
	var p struct {
		File string `json:"file"`
		Line int    `json:"line"`
	}
	if code != exitFail || json.Unmarshal([]byte(strings.Split(out, "\n")[0]), &p) != nil || p.Line != 2 {
		t.Errorf("--json: exit %d %s", code, out)
	}
}

func TestCLI_Config(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "c.yaml")
		os.WriteFile(p, []byte(s), 0o644)
		return p
	}
	tests := []struct{ yaml, says string }{
		{"polices: ./p\n", `"polices"`},
		{"durability: maybe\n", "durability"},
		{"on_error: ignore\n", "on_error"},
		{"entity_providers:\n  - {name: x}\n", `entity_providers[0]: name and command are required`},
		{"sinks:\n  - {name: p, type: plugin}\n", `command is required for a plugin sink`},
		{"sinks:\n  - {name: o, type: otlp, endpoint: x}\n", `endpoint "x"`},
		{"sinks:\n  - {name: a, type: file, path: x}\n  - {name: a, type: file, path: y}\n", `"a" is used twice`},
		{"retention: {max_age: 24h}\nsigning_key: \"\"\n", "retention: needs signing_key"},
		{"socket: ./s\nadmin_socket: ./s\n", "admin_socket"},
		{"reload: {debounce: soon}\n", "debounce"},
		// Type errors in the file's terms, not Go's (issue 17).
		{"approvals:\n  ttl: 5\n", "approvals.ttl: want a duration such as 15m, 2s or 100ms, got 5"},
		{"approvals: {ttl: 5m, tll: 5m}\n", `unknown key "approvals.tll"; did you mean "approvals.ttl"?`},
		{"approvals: 15m\n", "approvals: want a mapping of keys (single_use, ttl), got \"15m\""},
		{"approvals: {single_use: sometimes}\n", `approvals.single_use: want true or false, got "sometimes"`},
		{"commit: {max_batch: many}\n", `commit.max_batch: want a whole number, got "many"`},
		{"commit: {max_batch: 1.5}\n", `commit.max_batch: want a whole number, got 1.5`},
		{"policies: 5\n", `policies: want text, got 5`},
		{"mask: /a\n", `mask: want a list, got "/a"`},
		{"sinks:\n  - {name: a, type: file, path: x, batch_size: ten}\n", `sinks[0].batch_size: want a whole number, got "ten"`},
		{"sinks:\n  - {name: a, type: file, paht: x}\n", `unknown key "sinks[0].paht"; did you mean "sinks[0].path"?`},
		{"entity_providers:\n  - {name: a, command: x, timeout: 50}\n", `entity_providers[0].timeout: want a duration`},
		{"[1, 2]\n", "mapping is expected"},
	}
	for _, tt := range tests {
		code, _, stderr := runCLI(t, "serve", "--config", write(tt.yaml))
		if code != exitUsage || !strings.Contains(stderr, tt.says) {
			t.Errorf("%q: got exit %d %q, want 2 naming %s", tt.yaml, code, stderr, tt.says)
		}
		for _, goTerm := range []string{"Go struct", "time.Duration", "uint64", "unmarshal"} {
			if strings.Contains(stderr, goTerm) {
				t.Errorf("%q: the message speaks Go (%s): %q", tt.yaml, goTerm, stderr)
			}
		}
	}
	c, err := LoadConfig(write("policies: /etc/p\nreload: {debounce: 250ms}\ncommit: {max_batch: 64}\n"))
	if err != nil || c.Policies != "/etc/p" || c.Reload.Debounce.Milliseconds() != 250 || c.Commit.MaxBatch != 64 || c.DB != DefaultConfig().DB {
		t.Errorf("config: %+v %v", c, err)
	}
	if _, err := LoadConfig(write("")); err != nil {
		t.Errorf("an empty file is all defaults: %v", err)
	}
}

func TestCLI_LogQuery(t *testing.T) {
	d := newDaemonDir(t)
	d.start()
	answered := load(t, d.sock(), 1, stopAfter(20))
	if len(answered) == 0 {
		t.Fatal("nothing answered")
	}
	code, out, stderr := runCLI(t, "log", "query", "--db", d.db(), "--principal", "scraper", "--decision", "deny", "--since", "1h")
	if code != 0 {
		t.Fatalf("exit %d %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if !strings.HasPrefix(lines[0], "SEQ") || len(lines) < 2 {
		t.Fatalf("table: %s", out)
	}
	for _, l := range lines[1:] {
		if !strings.Contains(l, `Agent::"scraper"`) || !strings.Contains(l, "deny") || !strings.Contains(l, "untrusted-agents") {
			t.Errorf("row does not match the filter: %s", l)
		}
	}
	id := answered[0].DecisionID
	code, out, _ = runCLI(t, "log", "query", "--db", d.db(), "--decision", id, "--json")
	var row map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &row) != nil || row["decision_id"] != id || row["peer"] == nil {
		t.Errorf("by id: exit %d %s", code, out)
	}
}

// stopAfter closes its channel after n polls, bounding a load run.
func stopAfter(n int) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		for range n {
			timeSleep()
		}
		close(ch)
	}()
	return ch
}

// TestCLI_CheckCedarSemanticsOnCorpus runs check --cedar-semantics, the
// command users run, on a sample of the Cedar corpus.
func TestCLI_CheckCedarSemanticsOnCorpus(t *testing.T) {
	cases, err := cedarcorpus.Load()
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for i := 0; i < len(cases); i += len(cases) / 40 {
		tc := cases[i]
		dir, other := t.TempDir(), t.TempDir()
		ents, schema, reqs := filepath.Join(other, "e.json"), filepath.Join(other, "s.cedarschema"), filepath.Join(other, "r.jsonl")
		var lines []string
		for _, r := range tc.Requests {
			lines = append(lines, string(r.Body))
		}
		for path, b := range map[string][]byte{filepath.Join(dir, "policy.cedar"): tc.Policies, ents: tc.Entities, schema: tc.Schema, reqs: []byte(strings.Join(lines, "\n"))} {
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		validation := "strict"
		if !tc.ShouldValidate {
			validation = "off"
		}
		code, out, stderr := runCLI(t, "check", "--cedar-semantics", "--policies", dir, "--entities", ents, "--schema", schema, "--validation", validation, "--requests", reqs)
		if code != 0 {
			t.Fatalf("%s: exit %d %s\n%s", tc.Name, code, stderr, out)
		}
		for j, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var d struct{ Decision string }
			if err := json.Unmarshal([]byte(line), &d); err != nil {
				t.Fatal(err)
			}
			if d.Decision != tc.Requests[j].Decision {
				t.Errorf("%s request %d: got %s, Cedar says %s", tc.Name, j, d.Decision, tc.Requests[j].Decision)
			}
			checked++
		}
	}
	if checked < 100 {
		t.Errorf("only %d requests checked", checked)
	}
}

// A deny because nothing permits says so, with a hint when the schema does
// not know the action or an entity type (issue 17: an unknown action was
// deny with no reasons and no errors).
func TestCLI_CheckNoPermit(t *testing.T) {
	tests := []struct{ request, says string }{
		{`{"principal":"Agent::\"billing-bot\"","action":"Action::\"invoke_tol\"","resource":"Tool::\"sql.query\""}`, `the schema declares no action Action::\"invoke_tol\"`},
		{`{"principal":"Agnt::\"billing-bot\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"sql.query\""}`, `the schema declares no entity type Agnt (the principal's)`},
	}
	for _, tt := range tests {
		code, out, stderr := runCLI(t, "check", "--policies", "../../policies", "--request", tt.request)
		if code != 0 || !strings.Contains(out, `"decision":"deny"`) || !strings.Contains(out, `"policy":"no_permit"`) || !strings.Contains(out, tt.says) {
			t.Errorf("%s: exit %d %s %s, want deny by no_permit saying %s", tt.request, code, out, stderr, tt.says)
		}
	}
}
