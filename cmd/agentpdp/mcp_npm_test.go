//go:build mcpnpm

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// npmDir is where .ci/setup-mcp.sh installed the MCP SDK and servers; make
// test-mcp sets it and the build tag mcpnpm. The tests never skip: a missing
// or failed install fails them.
func npmDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("AGENTPDP_MCP_NPM")
	if dir == "" {
		t.Fatal("AGENTPDP_MCP_NPM is unset: run make test-mcp")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@modelcontextprotocol", "sdk")); err != nil {
		t.Fatalf("AGENTPDP_MCP_NPM=%s has no MCP SDK (run .ci/setup-mcp.sh): %v", dir, err)
	}
	return dir
}

type npmStep struct {
	Step   string   `json:"step"`
	OK     bool     `json:"ok"`
	Text   string   `json:"text"`
	Length int      `json:"length"`
	Tools  []string `json:"tools"`
	Seen   []string `json:"seen"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// runNPMClient runs the SDK client's scenario through agentpdp mcp-proxy (this
// test binary as agentpdp) in front of server.
func runNPMClient(t *testing.T, d *daemon, npm, scenario, resource string, env []string, server ...string) map[string]npmStep {
	t.Helper()
	proxy := append([]string{os.Args[0], "mcp-proxy", "--principal", `Agent::"billing-bot"`, "--socket", d.sock(),
		"--server-resource", resource, "--log-level", "warn", "--"}, server...)
	pj, _ := json.Marshal(proxy)
	ctx, cancel := context.WithTimeout(t.Context(), 80*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(npm, "client.mjs"), scenario)
	cmd.Env = append(os.Environ(), append(env, "AGENTPDP_TEST_MAIN=1", "AGENTPDP_PROXY_CMD="+string(pj))...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client %s: %v\n%s\n%s", scenario, err, out, stderr.String())
	}
	steps := map[string]npmStep{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var s npmStep
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatalf("client output %q: %v", sc.Text(), err)
		}
		steps[s.Step] = s
	}
	t.Logf("%s: %s", scenario, stderr.String())
	return steps
}

type loggedRow struct {
	Kind       string `json:"kind"`
	DecisionID string `json:"decision_id"`
	Decision   string `json:"decision"`
	Action     string `json:"action"`
	Status     string `json:"status"`
	Detail     any    `json:"detail"`
	Reasons    []struct {
		Policy string `json:"policy"`
	} `json:"reasons"`
}

func exportRows(t *testing.T, d *daemon) []loggedRow {
	t.Helper()
	_, out, _ := runCLI(t, "log", "export", "--db", d.db())
	var rows []loggedRow
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r loggedRow
		if json.Unmarshal([]byte(line), &r) == nil && (r.Kind == "decision" || r.Kind == "outcome") {
			rows = append(rows, r)
		}
	}
	return rows
}

// outcomeOf is the status of the outcome of the last decision on action.
func outcomeOf(rows []loggedRow, action string) (decision, status string, detail any) {
	var id string
	for _, r := range rows {
		if r.Kind == "decision" && r.Action == `Action::"`+action+`"` {
			id, decision, status, detail = r.DecisionID, r.Decision, "", nil
		}
		if r.Kind == "outcome" && r.DecisionID == id && id != "" {
			status, detail = r.Status, r.Detail
		}
	}
	return decision, status, detail
}

// TestMCPProxy_RealServers: the official TypeScript SDK client through
// agentpdp mcp-proxy to @modelcontextprotocol/server-everything and
// server-filesystem, with the inputs of issue 11.
func TestMCPProxy_RealServers(t *testing.T) {
	npm := npmDir(t)
	d := newDaemonDir(t)
	policies := filepath.Join(d.dir, "policies")
	os.RemoveAll(policies)
	writeFile(t, filepath.Join(policies, "mcp.cedar"), `
@id("everything") permit (principal == Agent::"billing-bot", action in [Action::"echo", Action::"trigger-long-running-operation", Action::"simulate-research-query"], resource == MCPServer::"everything");
@id("files") permit (principal == Agent::"billing-bot", action in [Action::"write_file", Action::"read_text_file"], resource == MCPServer::"files");
@id("no-secrets") forbid (principal, action, resource) when { context has args && context.args has path && context.args.path like "*secret*" };`)
	d.start()
	everything := filepath.Join(npm, "node_modules", "@modelcontextprotocol", "server-everything", "dist", "index.js")
	filesystem := filepath.Join(npm, "node_modules", "@modelcontextprotocol", "server-filesystem", "dist", "index.js")

	t.Run("Everything", func(t *testing.T) {
		steps := runNPMClient(t, d, npm, "everything", `MCPServer::"everything"`, nil, "node", everything, "stdio")
		if s := steps["list"]; !slices.Contains(s.Tools, "echo") || !slices.Contains(s.Tools, "get-env") {
			t.Errorf("tools/list: %+v", s)
		}
		if s := steps["echo"]; !s.OK || !strings.Contains(s.Text, "hello") {
			t.Errorf("allowed echo: %+v", s)
		}
		if s := steps["get-env"]; s.Error == nil || s.Error.Code != -32001 {
			t.Errorf("get-env must be denied: %+v", s)
		}
		for _, name := range []string{"Name", "Arguments"} {
			if s := steps[name]; s.Error == nil || s.Error.Code != -32602 {
				t.Errorf("%q beside its lowercase member must be refused: %+v", name, s)
			}
		}
		if s := steps["big"]; !s.OK || s.Length < 8<<20 {
			t.Errorf("8 MiB of arguments: %+v", s)
		}
		if s := steps["cancel"]; s.Error == nil {
			t.Errorf("the cancelled call: %+v", s)
		}
		if s := steps["task"]; !s.OK || !slices.Contains(s.Seen, "taskCreated") || !slices.Contains(s.Seen, "result") || len(s.Seen) < 3 {
			t.Errorf("the task-augmented call: %+v", s)
		}
		rows := exportRows(t, d)
		if dec, status, _ := outcomeOf(rows, "echo"); dec != "allow" || status != "success" {
			t.Errorf("echo: %s %s", dec, status)
		}
		if dec, status, detail := outcomeOf(rows, "trigger-long-running-operation"); dec != "allow" || status != "error" || !strings.Contains(fmt.Sprint(detail), "cancelled:true") {
			t.Errorf("the cancelled call's outcome: %s %s %v", dec, status, detail)
		}
		if dec, status, _ := outcomeOf(rows, "simulate-research-query"); dec != "allow" || status != "success" {
			t.Errorf("the task's outcome: %s %s (recorded at its terminal state)", dec, status)
		}
		var refused []string
		for _, r := range rows {
			if r.Kind == "decision" && r.Decision == "deny" && len(r.Reasons) > 0 && r.Reasons[0].Policy == "request_refused" {
				refused = append(refused, r.Action)
			}
		}
		if !slices.Equal(refused, []string{`Action::"get-env"`, `Action::"echo"`}) {
			t.Errorf("refused calls logged as denies: %v", refused)
		}
	})

	t.Run("Filesystem", func(t *testing.T) {
		files := t.TempDir()
		steps := runNPMClient(t, d, npm, "filesystem", `MCPServer::"files"`, []string{"AGENTPDP_FS_DIR=" + files}, "node", filesystem, files)
		if s := steps["write"]; !s.OK {
			t.Errorf("write_file of 2 MiB: %+v", s)
		}
		if b, err := os.ReadFile(filepath.Join(files, "ok.txt")); err != nil || len(b) != 2<<20 {
			t.Errorf("the file written: %d bytes, %v", len(b), err)
		}
		if s := steps["read"]; !s.OK || s.Length != 2<<20 {
			t.Errorf("read_text_file: %+v", s)
		}
		if s := steps["secret"]; s.Error == nil || s.Error.Code != -32001 {
			t.Errorf("an args-based forbid: %+v", s)
		}
		if s := steps["Arguments"]; s.Error == nil || s.Error.Code != -32602 {
			t.Errorf("Arguments beside arguments: %+v", s)
		}
		for _, name := range []string{"secret.txt", "fine.txt"} {
			if _, err := os.Stat(filepath.Join(files, name)); err == nil {
				t.Errorf("%s was written by a refused call", name)
			}
		}
	})
}
