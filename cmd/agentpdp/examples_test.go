package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Each walkthrough of examples/README.md runs as a script against a daemon
// of its own in a temporary directory, and fails when a step does not do
// what the text says (issue 17: authorize.sh's step-up failed at every step
// and still exited 0).
func TestExamples_Walkthroughs(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed: the curl walkthrough needs it")
	}
	cmd := exec.Command("bash", "../../examples/walkthrough.sh", "curl")
	cmd.Env = append(os.Environ(), "AGENTPDP="+os.Args[0], "AGENTPDP_TEST_MAIN=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok: walkthrough curl") {
		t.Fatalf("walkthrough curl: %v\n%s", err, out)
	}

	// Against policies that deny everything, the first step fails, and so
	// does the script.
	d := newDaemonDir(t)
	writeFile(t, filepath.Join(d.dir, "policies", "agents.cedar"), `@id("no") forbid (principal, action, resource);`+"\n")
	d.start()
	script := exec.Command("bash", "../../examples/curl/authorize.sh")
	script.Env = append(os.Environ(), "AGENTPDP_SOCKET="+d.sock(), "AGENTPDP_ADMIN_SOCKET="+d.asock())
	out, err = script.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "FAILED: expected allow") {
		t.Errorf("a failing step must fail the walkthrough: %v\n%s", err, out)
	}
}
