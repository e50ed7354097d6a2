package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
)

// The first hour of a new user (issue 17): mistyped commands and flags get
// a suggestion, every message has one prefix and says what to do next.
func TestCLI_Suggestions(t *testing.T) {
	tests := []struct {
		args []string
		says string
	}{
		{[]string{"sevre"}, `unknown command "sevre"; did you mean "serve"?`},
		{[]string{"valdiate"}, `did you mean "validate"?`},
		{[]string{"log", "quer"}, `log: unknown command "quer"; did you mean "query"?`},
		{[]string{"xyzzy"}, `unknown command "xyzzy"; the commands are bench, check`},
		{[]string{"serve", "--polices", "x"}, `serve: unknown flag --polices; did you mean --policies?`},
		{[]string{"log", "query", "--decison", "allow"}, `did you mean --decision?`},
		{[]string{"log", "query", "--limit", "many"}, `log query: --limit: want a whole number, got "many"`},
		{[]string{"bench", "-d", "5"}, `bench: --duration: want a duration such as 15m, 2s or 100ms, got "5"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, _, stderr := runCLI(t, tt.args...)
			if code != exitUsage || !strings.Contains(stderr, tt.says) {
				t.Errorf("got exit %d %q, want 2 saying %s", code, stderr, tt.says)
			}
		})
	}
}

// repeatedPrefix reports "x: x:", the same prefix twice in a row, on any line.
func repeatedPrefix(s string) bool {
	for _, line := range strings.Split(s, "\n") {
		segs := strings.Split(line, ": ")
		for i := 1; i < len(segs); i++ {
			if segs[i] == segs[i-1] || strings.HasSuffix(segs[i-1], " "+segs[i]) {
				return true
			}
		}
	}
	return false
}

func TestCLI_OnePrefixAndAHint(t *testing.T) {
	dir := t.TempDir()
	tests := [][]string{
		{"sevre"},
		{"serve", "extra-arg"},
		{"log", "show"},
		{"log", "chain"},
		{"log", "prove"},
		{"log", "verify-proof"},
		{"console", "add-user"},
		{"log", "query", "--decision", "permit"},
		{"log", "query", "--db", filepath.Join(dir, "none.db")},
		{"log", "verify", "--db", filepath.Join(dir, "none.db"), "--trusted-checkpoint", filepath.Join(dir, "none.json")},
		{"validate", "--policies", filepath.Join(dir, "nowhere")},
		{"check", "--policies", filepath.Join(dir, "nowhere"), "--request", "{}"},
		{"test", "--policies", filepath.Join(dir, "nowhere")},
		{"keygen"},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, _, stderr := runCLI(t, args...)
			if code != exitUsage {
				t.Errorf("exit %d, want 2: %s", code, stderr)
			}
			if strings.Count(stderr, "agentpdp:") != 1 || strings.Contains(stderr, "agentpdp: agentpdp") || repeatedPrefix(stderr) {
				t.Errorf("a prefix twice: %q", stderr)
			}
			want := "Run 'agentpdp " + args[0]
			if args[0] == "sevre" {
				want = "Run 'agentpdp --help'"
			}
			if !strings.Contains(stderr, want) {
				t.Errorf("no hint %q: %q", want, stderr)
			}
		})
	}
}

func TestCLI_Version(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		code, out, stderr := runCLI(t, args...)
		if code != 0 || !strings.HasPrefix(out, "agentpdp ") || !strings.Contains(out, "go       go1.") || !strings.Contains(out, "cedar-go v1.") {
			t.Errorf("%v: exit %d %q %q", args, code, out, stderr)
		}
	}
	code, out, _ := runCLI(t, "version", "--json")
	var v buildVersion
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil || v.Version == "" || !strings.HasPrefix(v.CedarGo, "v1.") || !strings.HasPrefix(v.Go, "go1.") {
		t.Errorf("version --json: exit %d %q %v", code, out, err)
	}
}

// Enumerated values are checked, and what a command checks is told apart
// from a wrong command line: a missing file named by a flag is exit 2.
func TestCLI_EnumsAndMissingFiles(t *testing.T) {
	d := newDaemonDir(t)
	d.start()
	d.cmd.Process.Kill()
	<-d.done
	empty := filepath.Join(d.dir, "empty.json")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		code int
		says string
	}{
		{[]string{"log", "query", "--db", d.db(), "--decision", "permit"}, exitUsage, `--decision "permit": want allow, deny or step_up, or a decision id`},
		{[]string{"replay", "--db", d.db(), "--decision", "Allow"}, exitUsage, `--decision "Allow"`},
		{[]string{"log", "export", "--db", d.db(), "--kind", "decisions"}, exitUsage, `--kind "decisions": want one of decision, outcome`},
		{[]string{"log", "verify", "--db", d.db(), "--trusted-checkpoint", filepath.Join(d.dir, "cp.json")}, exitUsage, "--trusted-checkpoint " + filepath.Join(d.dir, "cp.json") + ": no such file"},
		{[]string{"log", "verify", "--db", d.db(), "--pubkey", filepath.Join(d.dir, "k.pub")}, exitUsage, "--pubkey " + filepath.Join(d.dir, "k.pub") + ": no such file"},
		{[]string{"log", "tail", "--db", filepath.Join(d.dir, "elsewhere.db")}, exitUsage, "no such file; give the decision log serve writes"},
		{[]string{"log", "query", "--db", d.db(), "--decision", "allow"}, 0, "SEQ"},
		// A file where the JSON belongs, with or without curl's @.
		{[]string{"check", "--request", empty}, exitUsage, "--request takes the request's JSON itself; to read the file " + empty + ", use --requests " + empty},
		{[]string{"check", "--request", "@" + empty}, exitUsage, "to read the file " + empty + ", use --requests"},
		// A request that is not JSON: the flag is named, once.
		{[]string{"check", "--policies", "../../policies", "--request", `{"principal":`}, exitFail, "check --request: bad request: "},
		// A seq where the id belongs: the message says which log was read
		// and where the ids are.
		{[]string{"log", "show", "--db", d.db(), "5"}, exitFail, `log show: no decision with id "5" in ` + d.db() + " (log query lists decision ids"},
		// log prove said only "decision 5: not found" and "prove seq 999:
		// not found", and opened a missing --db with a raw stat error (exit 1).
		{[]string{"log", "prove", "--db", d.db(), "5"}, exitFail, `log prove: no decision with id "5" in ` + d.db() + " (log query lists decision ids"},
		{[]string{"log", "prove", "--db", d.db(), "--seq", "999"}, exitFail, "log prove: no row with seq 999 in " + d.db() + " (log tail lists seqs"},
		{[]string{"log", "prove", "--db", filepath.Join(d.dir, "elsewhere.db"), "5"}, exitUsage, "log prove: --db " + filepath.Join(d.dir, "elsewhere.db") + ": no such file; give the decision log serve writes"},
		{[]string{"log", "verify-proof", filepath.Join(d.dir, "proof.json"), "--pubkey", filepath.Join(d.dir, "k.pub")}, exitUsage, "--pubkey " + filepath.Join(d.dir, "k.pub") + ": no such file"},
		{[]string{"log", "verify-proof", filepath.Join(d.dir, "proof.json"), "--pubkey", filepath.Join(d.dir, "var", "signing.key.pub")}, exitUsage, filepath.Join(d.dir, "proof.json") + ": no such file; give a proof written by agentpdp log prove"},
		// An empty file is what `log export --kind checkpoint | tail -1 > F`
		// and `log prove ID > F` leave before the first checkpoint: the
		// message says how to fill it, not "unexpected end of JSON input".
		{[]string{"log", "verify", "--db", d.db(), "--trusted-checkpoint", empty}, exitUsage, "--trusted-checkpoint " + empty + " is empty: save a checkpoint row in it"},
		{[]string{"log", "verify-proof", empty, "--pubkey", filepath.Join(d.dir, "var", "signing.key.pub")}, exitUsage, empty + " is empty: write a proof into it with agentpdp log prove"},
		// Killed before its first checkpoint: the log is intact, and the
		// message says when a checkpoint will come rather than blaming a
		// missing key the daemon has.
		{[]string{"log", "verify", "--db", d.db(), "--pubkey", filepath.Join(d.dir, "var", "signing.key.pub")}, 0, "no signed checkpoints yet"},
	}
	for _, tt := range tests {
		code, out, stderr := runCLI(t, tt.args...)
		if code != tt.code || !strings.Contains(stderr+out, tt.says) {
			t.Errorf("%v: got exit %d %q, want %d saying %s", tt.args[:2], code, stderr, tt.code, tt.says)
		}
	}
	if _, err := os.Stat(filepath.Join(d.dir, "elsewhere.db")); err == nil {
		t.Error("reading a log that is not there created it")
	}
}

// validate, check and test share serve's default policy directory.
func TestCLI_DefaultPolicies(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "policies"), os.DirFS("../../policies")); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	if code, out, stderr := runCLI(t, "validate"); code != 0 || !strings.Contains(out, "ok: ") {
		t.Errorf("validate with no flags: exit %d %q %q", code, out, stderr)
	}
	if code, out, stderr := runCLI(t, "check", "--request", billingRead); code != 0 || !strings.Contains(out, `"allow"`) {
		t.Errorf("check with no --policies: exit %d %q %q", code, out, stderr)
	}
	if code, _, stderr := runCLI(t, "test"); code != 0 {
		t.Errorf("test with no flags: exit %d %q", code, stderr)
	}
}

// A start that fails leaves no directory, key or database behind, and says
// what failed once.
func TestServe_FailedStartCreatesNothing(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	empty := func() {
		t.Helper()
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.Name() != "policies" {
				t.Errorf("a failed start left %s", e.Name())
			}
		}
	}
	code, _, stderr := runCLI(t, "serve")
	if code != exitUsage || !strings.Contains(stderr, "policies ./policies: no such directory; give --policies DIR") {
		t.Errorf("no ./policies: exit %d %q", code, stderr)
	}
	empty()

	os.Mkdir("policies", 0o755)
	os.WriteFile("policies/a.cedar", []byte("permit (principal action, resource);\n"), 0o644)
	code, _, stderr = runCLI(t, "serve")
	if code != exitFail || strings.Count(stderr, "a.cedar:1:") != 1 || !strings.Contains(stderr, "agentpdp validate --policies ./policies") {
		t.Errorf("broken policy: exit %d %q, want 1 naming it once", code, stderr)
	}
	empty()

	// Another daemon on the socket: refused before anything is made.
	os.WriteFile("policies/a.cedar", []byte("permit (principal, action, resource);\n"), 0o644)
	sock := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	code, _, stderr = runCLI(t, "serve", "--socket", sock)
	if code != exitFail || !strings.Contains(stderr, "another agentpdp is serving on it") {
		t.Errorf("socket in use: exit %d %q", code, stderr)
	}
	for _, e := range []string{"var"} {
		if _, err := os.Stat(e); err == nil {
			t.Errorf("a failed start left %s", e)
		}
	}
}

// A sink's error names the sink once.
func TestShipOnce_ErrorNamesTheSinkOnce(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "d.db")
	log, err := decisionlog.Open(t.Context(), db, decisionlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := log.Append(t.Context(), &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: []byte(`{"decision":"allow"}`)}); err != nil {
		t.Fatal(err)
	}
	log.Close(t.Context())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // a receiver that is down
	config := filepath.Join(dir, "c.yaml")
	os.WriteFile(config, []byte(fmt.Sprintf("db: %s\nsinks:\n  - {name: upstream, type: http, url: \"http://%s/ingest\"}\n", db, addr)), 0o644)
	code, _, stderr := runCLI(t, "ship", "--config", config, "--once")
	if code != exitFail || strings.Count(stderr, "sink upstream:") != 1 || !strings.Contains(stderr, "ship on the next run") {
		t.Errorf("exit %d %q, want 1 naming the sink once", code, stderr)
	}
}

// A collector config whose values are wrong names its file, as a
// collector config whose YAML is wrong does, and every key at fault.
func TestCollector_ConfigErrorsNameTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "collector.yaml")
	if err := os.WriteFile(path, []byte("listen: 127.0.0.1:0\nlog:\n  level: loud\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "collector", "--config", path)
	for _, says := range []string{"collector config " + path + ": ", "postgres: a DSN is required", `log.level: "loud"`, "origins: at least one is required"} {
		if !strings.Contains(stderr, says) {
			t.Errorf("exit %d %q, want it to say %s", code, stderr, says)
		}
	}
	if code == 0 || repeatedPrefix(stderr) {
		t.Errorf("exit %d %q", code, stderr)
	}
}
