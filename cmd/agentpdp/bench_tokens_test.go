package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchTokens_MixWithJWTs runs the JWT measurement as docs/identity.md
// and the README describe it: examples/bench-tokens writes a JWKS and a
// requests file, a daemon serves examples/bench-jwt.yaml, and bench sends
// the file. The mix gives allow, deny and step_up, each decided as the
// principal its token verified (the file's tools once lacked the default
// pack's catalog as their parent, so every request was denied by
// unknown-tools and the JWT figure measured a mix of denies only).
func TestBenchTokens_MixWithJWTs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds examples/bench-tokens")
	}
	gen := filepath.Join(t.TempDir(), "bench-tokens")
	build := exec.Command("go", "build", "-o", gen, "./examples/bench-tokens")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build examples/bench-tokens: %v\n%s", err, out)
	}
	out := t.TempDir()
	if b, err := exec.Command(gen, out).CombinedOutput(); err != nil {
		t.Fatalf("bench-tokens: %v\n%s", err, b)
	}

	d := newDaemonDir(t)
	cfg, err := os.ReadFile("../../examples/bench-jwt.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), "./var/bench-jwks.json") {
		t.Fatalf("examples/bench-jwt.yaml no longer reads ./var/bench-jwks.json:\n%s", cfg)
	}
	appendConfig(t, d, strings.ReplaceAll(string(cfg), "./var/bench-jwks.json", filepath.Join(out, "bench-jwks.json")))
	d.start()

	code, stdout, stderr := runCLI(t, "bench", "--socket", d.sock(), "--admin-socket", d.asock(), "-c", "2", "--warmup", "0s", "-d", "1s",
		"--requests", filepath.Join(out, "bench-requests.jsonl"), "--json")
	var res benchResult
	if code != 0 || json.Unmarshal([]byte(stdout), &res) != nil || res.Decisions == 0 || len(res.Errors) != 0 {
		t.Fatalf("bench: exit %d, %+v\n%s", code, res, stderr)
	}
	for _, answer := range []string{"allow", "deny", "step_up"} {
		if res.ByDecision[answer] == 0 {
			t.Errorf("the JWT mix gave no %s: %v", answer, res.ByDecision)
		}
	}

	// Each decision was made as the principal the token verified.
	code, stdout, stderr = runCLI(t, "log", "query", "--db", d.db(), "--limit", "50", "--json")
	if code != 0 {
		t.Fatalf("log query: exit %d\n%s", code, stderr)
	}
	rows := 0
	for line := range strings.Lines(stdout) {
		var row struct {
			Evidence struct {
				Principal string `json:"principal"`
			} `json:"evidence"`
		}
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if row.Evidence.Principal != "verified" {
			t.Errorf("a row's principal is %q, want verified: %s", row.Evidence.Principal, line)
		}
		rows++
	}
	if rows == 0 {
		t.Error("log query found no decisions")
	}
}
