package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestPythonClient runs the Python client's own tests against a real daemon.
func TestPythonClient(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed: the Python client's tests (examples/python) need it")
	}
	d := newDaemonDir(t)
	d.start()
	cmd := exec.CommandContext(t.Context(), python, "-m", "unittest", "-v")
	cmd.Dir = "../../examples/python"
	cmd.Env = append(os.Environ(), "AGENTPDP_SOCKET="+d.sock(), "AGENTPDP_ADMIN_SOCKET="+d.asock(), "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "\nOK") {
		t.Fatalf("python tests: %v\n%s", err, out)
	}
	// What Python asked for is in the log, with Python as the kernel saw it.
	code, logged, _ := runCLI(t, "log", "query", "--db", d.db(), "--session", "s-py", "--json")
	if code != 0 || !strings.Contains(logged, "python3") {
		t.Errorf("python decisions in the log, peer python3:\n%s", logged)
	}
}
