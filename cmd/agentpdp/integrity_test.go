package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp/client"
)

func TestCLI_ProveAndVerifyProof(t *testing.T) {
	d := newDaemonDir(t)
	appendConfig(t, d, "checkpoints: {every_rows: 5}\n")
	d.start()
	answered := startLoad(t, d.sock(), 2)
	time.Sleep(200 * time.Millisecond)
	decisions := answered()
	d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.done
	if len(decisions) == 0 {
		t.Fatal("no decisions")
	}
	pub := filepath.Join(d.dir, "var", "signing.key.pub")
	id := decisions[0].DecisionID
	code, out, stderr := runCLI(t, "log", "prove", id, "--db", d.db())
	if code != 0 {
		t.Fatalf("log prove: %d %s", code, stderr)
	}
	proofFile := filepath.Join(d.dir, "proof.json")
	must(t, os.WriteFile(proofFile, []byte(out), 0o644))
	// Offline: no database, just the file and the key.
	code, out, stderr = runCLI(t, "log", "verify-proof", proofFile, "--pubkey", pub)
	if code != 0 || !strings.Contains(out, "ok: decision "+id) {
		t.Fatalf("verify-proof: %d %s %s", code, out, stderr)
	}
	var p decisionlog.InclusionProof
	must(t, json.Unmarshal([]byte(mustRead(t, proofFile)), &p))
	p.Row.Body = strings.Replace(p.Row.Body, id, id+"0", 1)
	b, _ := json.Marshal(p)
	must(t, os.WriteFile(proofFile, b, 0o644))
	if code, _, stderr = runCLI(t, "log", "verify-proof", proofFile, "--pubkey", pub); code != exitFail || !strings.Contains(stderr, "FAILED") {
		t.Errorf("a changed row: %d %s", code, stderr)
	}
	if code, _, _ = runCLI(t, "log", "verify-proof", proofFile); code != exitUsage {
		t.Errorf("verify-proof without --pubkey: %d", code)
	}

	// Consistency between the first and the last checkpoint.
	r, err := decisionlog.OpenReader(d.db())
	must(t, err)
	cps, err := r.Query(t.Context(), decisionlog.Filter{Kinds: []decisionlog.Kind{decisionlog.KindCheckpoint}})
	r.Close()
	if err != nil || len(cps) < 2 {
		t.Fatalf("checkpoints: %d %v", len(cps), err)
	}
	sizes := []int64{}
	for _, e := range cps {
		var c decisionlog.Checkpoint
		must(t, json.Unmarshal(e.Body, &c))
		sizes = append(sizes, c.Seq)
	}
	old, nw := fmt.Sprint(min(sizes[0], sizes[len(sizes)-1])), fmt.Sprint(max(sizes[0], sizes[len(sizes)-1]))
	code, out, stderr = runCLI(t, "log", "prove", "--consistency", old, nw, "--db", d.db())
	if code != 0 {
		t.Fatalf("prove --consistency: %d %s", code, stderr)
	}
	must(t, os.WriteFile(proofFile, []byte(out), 0o644))
	code, out, stderr = runCLI(t, "log", "verify-proof", proofFile, "--pubkey", pub)
	if code != 0 || !strings.Contains(out, "extends the tree of "+old) || !strings.Contains(out, "(the signed checkpoint the proof carries)") {
		t.Fatalf("verify-proof (consistency): %d %s %s", code, out, stderr)
	}
	// From a size no checkpoint signs, the old root is the proof's word
	// alone, and the message says so in one parenthesis (it once nested two).
	code, out, stderr = runCLI(t, "log", "prove", "--consistency", "1", nw, "--db", d.db())
	if code != 0 {
		t.Fatalf("prove --consistency 1: %d %s", code, stderr)
	}
	must(t, os.WriteFile(proofFile, []byte(out), 0o644))
	code, out, stderr = runCLI(t, "log", "verify-proof", proofFile, "--pubkey", pub)
	if code != 0 || !strings.Contains(out, "extends the tree of 1 row (an old root the proof states but no checkpoint signs: compare it with your copy of that checkpoint);") {
		t.Fatalf("verify-proof (consistency from 1): %d %s %s", code, out, stderr)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return string(b)
}

// A second daemon on the same log, even with other sockets, exits naming
// the first one's pid and writes nothing; the first goes on answering.
func TestServe_SecondDaemonOnOneLogExits(t *testing.T) {
	d := newDaemonDir(t)
	d.start()
	r, err := decisionlog.OpenReader(d.db())
	must(t, err)
	before, _ := r.LastSeq(t.Context())
	r.Close()

	second := exec.Command(os.Args[0], "serve", "--config", d.config,
		"--socket", filepath.Join(d.dir, "var", "b.sock"), "--admin-socket", filepath.Join(d.dir, "var", "b-admin.sock"))
	second.Env = append(os.Environ(), "AGENTPDP_TEST_MAIN=1")
	out, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(out), fmt.Sprintf("pid %d", d.cmd.Process.Pid)) {
		t.Fatalf("second daemon: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(d.dir, "var", "b.sock")); err == nil {
		t.Error("the second daemon made its socket")
	}
	r, err = decisionlog.OpenReader(d.db())
	must(t, err)
	after, _ := r.LastSeq(t.Context())
	r.Close()
	if after != before {
		t.Errorf("the second daemon wrote rows %d to %d", before+1, after)
	}
	// The same again with the same sockets: the first daemon's stay.
	third := exec.Command(os.Args[0], "serve", "--config", d.config)
	third.Env = append(os.Environ(), "AGENTPDP_TEST_MAIN=1")
	if out, err := third.CombinedOutput(); err == nil {
		t.Fatalf("third daemon: %s", out)
	}
	finish := startLoad(t, d.sock(), 1)
	time.Sleep(100 * time.Millisecond)
	if got := finish(); len(got) == 0 {
		t.Error("the first daemon stopped answering")
	}
}

// A FIFO named x.cedar neither wedges reload nor shutdown, and a *.cedar
// link to a secret file is refused without its content reaching
// /v1/status or the daemon's log.
func TestServe_HostilePolicyFiles(t *testing.T) {
	const secret = "hunter2-correct-horse-battery"
	d := newDaemonDir(t)
	d.start()
	polDir := filepath.Join(d.dir, "policies")
	must(t, syscall.Mkfifo(filepath.Join(polDir, "x.cedar"), 0o644))
	secretFile := filepath.Join(d.dir, "secret.txt")
	must(t, os.WriteFile(secretFile, []byte(secret+" staple\n"), 0o600))
	must(t, os.Symlink(secretFile, filepath.Join(polDir, "y.cedar")))
	d.cmd.Process.Signal(syscall.SIGHUP)
	var status map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for {
		status = nil
		err := client.New(d.asock()).Do(t.Context(), http.MethodGet, "/v1/status", nil, &status)
		b, _ := json.Marshal(status)
		if err == nil && strings.Contains(string(b), "x.cedar") {
			if strings.Contains(string(b), "hunter2") {
				t.Errorf("the secret reached /v1/status: %s", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reload error on /v1/status: %v %s", err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Remove the FIFO: the secret link is the next refusal.
	os.Remove(filepath.Join(polDir, "x.cedar"))
	d.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		t.Fatal("SIGTERM did not stop the daemon")
	}
	if strings.Contains(d.stderr.String(), "hunter2") {
		t.Error("the secret reached the daemon's log")
	}
	if !strings.Contains(d.stderr.String(), "symlink out of the policy directory") {
		t.Errorf("the link's refusal is not logged:\n%s", d.stderr)
	}
}
