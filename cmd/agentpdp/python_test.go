package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/internal/pdptest"
)

// TestPythonClient runs the Python client's own tests against a real daemon.
func TestPythonClient(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed: the Python client's tests (examples/python) need it")
	}
	d := newDaemonDir(t)
	// The test issuer's tokens for deploy-bot, verified by the daemon.
	is := pdptest.NewIssuer(t)
	appendConfig(t, d, is.YAML())
	tokens := t.TempDir()
	tok := is.Token(t, "deploy-bot", 10*time.Minute, map[string]any{"scope": "deploy:production"})
	for name, tok := range map[string]string{"valid.jwt": tok, "expired.jwt": is.Token(t, "deploy-bot", -time.Minute, nil)} {
		if err := os.WriteFile(filepath.Join(tokens, name), []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d.start()
	cmd := exec.CommandContext(t.Context(), python, "-m", "unittest", "-v")
	cmd.Dir = "../../examples/python"
	cmd.Env = append(os.Environ(), "AGENTPDP_SOCKET="+d.sock(), "AGENTPDP_ADMIN_SOCKET="+d.asock(), "PYTHONDONTWRITEBYTECODE=1",
		"AGENTPDP_TOKEN_FILE="+filepath.Join(tokens, "valid.jwt"), "AGENTPDP_EXPIRED_TOKEN_FILE="+filepath.Join(tokens, "expired.jwt"))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "\nOK") {
		t.Fatalf("python tests: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "skipped") {
		t.Errorf("python tests skipped, the token tests must run here:\n%s", out)
	}
	// What Python asked for is in the log, with Python as the kernel saw it.
	code, logged, _ := runCLI(t, "log", "query", "--db", d.db(), "--session", "s-py", "--json")
	if code != 0 || !strings.Contains(logged, "python3") {
		t.Errorf("python decisions in the log, peer python3:\n%s", logged)
	}
	// The token's signature is in neither the log nor the daemon's output.
	sig := tok[strings.LastIndexByte(tok, '.')+1:]
	for _, f := range []string{d.db(), d.db() + "-wal"} {
		if b, err := os.ReadFile(f); err == nil && bytes.Contains(b, []byte(sig)) {
			t.Errorf("the token reached %s", f)
		}
	}
	if strings.Contains(d.stderr.String(), sig) {
		t.Error("the token reached the daemon's log output")
	}
}
