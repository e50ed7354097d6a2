package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/pdp/client"
)

// testMCPServer is a small MCP server on stdio for the proxy's test: four
// tools, one of which reports an error. It appends each tool called to
// $AGENTPDP_TEST_MCP_LOG, so the test can see what reached it.
func testMCPServer() {
	sc := bufio.NewScanner(os.Stdin)
	out := json.NewEncoder(os.Stdout)
	for sc.Scan() {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				Name      string          `json:"name"`
				Arguments json.RawMessage `json:"arguments"`
			} `json:"params"`
		}
		if json.Unmarshal(sc.Bytes(), &m) != nil || len(m.ID) == 0 {
			continue // notifications
		}
		var result any
		switch m.Method {
		case "initialize":
			result = map[string]any{"protocolVersion": "2025-06-18", "capabilities": map[string]any{"tools": map[string]any{}},
				"serverInfo": map[string]any{"name": "test-server", "version": "1.0"}}
		case "tools/list":
			var tools []map[string]any
			for _, n := range []string{"search", "deploy", "export", "fail"} {
				tools = append(tools, map[string]any{"name": n, "inputSchema": map[string]any{"type": "object"}})
			}
			result = map[string]any{"tools": tools}
		case "tools/call":
			if f, err := os.OpenFile(os.Getenv("AGENTPDP_TEST_MCP_LOG"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
				fmt.Fprintln(f, m.Params.Name)
				f.Close()
			}
			result = map[string]any{"content": []map[string]any{{"type": "text", "text": m.Params.Name + " called with " + string(m.Params.Arguments)}},
				"isError": m.Params.Name == "fail"}
		default:
			out.Encode(map[string]any{"jsonrpc": "2.0", "id": m.ID, "error": map[string]any{"code": -32601, "message": "no method " + m.Method}})
			continue
		}
		out.Encode(map[string]any{"jsonrpc": "2.0", "id": m.ID, "result": result})
	}
}

type rpcAnswer struct {
	ID     int             `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Data    struct {
			DecisionID string `json:"decision_id"`
		} `json:"data"`
	} `json:"error"`
}

func TestMCPProxy(t *testing.T) {
	d := newDaemonDir(t)
	policies := filepath.Join(d.dir, "policies")
	os.RemoveAll(policies)
	writeFile(t, filepath.Join(policies, "mcp.cedar"), `
@id("search") permit (principal == Agent::"billing-bot", action == Action::"search", resource);
@id("deploy") permit (principal, action == Action::"deploy", resource);
@id("deploys-need-a-human") @step_up("deploys need a human") forbid (principal, action == Action::"deploy", resource);
@id("fail") permit (principal, action == Action::"fail", resource);`)
	d.start() // before the environment below, which makes a child an MCP server
	calls := filepath.Join(d.dir, "calls.log")
	t.Setenv("AGENTPDP_TEST_MCP_SERVER", "1")
	t.Setenv("AGENTPDP_TEST_MCP_LOG", calls)

	clientIn, proxyIn := io.Pipe()
	proxyOut, clientOut := io.Pipe()
	var stderr strings.Builder
	done := make(chan int)
	go func() {
		done <- run(t.Context(), []string{"mcp-proxy", "--principal", `Agent::"billing-bot"`, "--socket", d.sock(), "--filter-tools", "--", os.Args[0]},
			clientIn, clientOut, &stderr)
		clientOut.Close()
	}()
	answers := bufio.NewScanner(proxyOut)
	ask := func(id int, method string, params any) rpcAnswer {
		t.Helper()
		b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
		if _, err := proxyIn.Write(append(b, '\n')); err != nil {
			t.Fatal(err)
		}
		if !answers.Scan() {
			t.Fatalf("no answer to %s: %s", method, stderr.String())
		}
		var a rpcAnswer
		if err := json.Unmarshal(answers.Bytes(), &a); err != nil || a.ID != id {
			t.Fatalf("answer %s: %v", answers.Bytes(), err)
		}
		return a
	}

	init := ask(1, "initialize", map[string]any{"protocolVersion": "2025-06-18", "capabilities": map[string]any{}})
	if !strings.Contains(string(init.Result), `"test-server"`) {
		t.Errorf("initialize not passed through: %s", init.Result)
	}
	proxyIn.Write([]byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}` + "\n"))
	var list struct {
		Tools []struct{ Name string } `json:"tools"`
	}
	json.Unmarshal(ask(2, "tools/list", map[string]any{}).Result, &list)
	var names []string
	for _, tl := range list.Tools {
		names = append(names, tl.Name)
	}
	if strings.Join(names, ",") != "search,deploy,fail" {
		t.Errorf("tools/list filtered to %v, want search, deploy, fail (export is denied)", names)
	}

	if a := ask(3, "tools/call", map[string]any{"name": "search", "arguments": map[string]any{"q": "invoices"},
		"_meta": map[string]any{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}); a.Error != nil || !strings.Contains(string(a.Result), `search called with {\"q\":\"invoices\"}`) {
		t.Errorf("allowed call: %+v %s", a.Error, a.Result)
	}
	if a := ask(4, "tools/call", map[string]any{"name": "export", "arguments": map[string]any{}}); a.Error == nil || a.Error.Code != -32001 || !strings.Contains(a.Error.Message, "denied") {
		t.Errorf("denied call: %+v", a)
	}
	step := ask(5, "tools/call", map[string]any{"name": "deploy", "arguments": map[string]any{"app": "web"}})
	if step.Error == nil || step.Error.Code != -32002 || !strings.Contains(step.Error.Message, "deploys need a human") || step.Error.Data.DecisionID == "" {
		t.Fatalf("step_up call: %+v", step)
	}
	if _, err := client.New(d.asock()).Approve(t.Context(), step.Error.Data.DecisionID, "carol@example.com", true, ""); err != nil {
		t.Fatal(err)
	}
	if a := ask(6, "tools/call", map[string]any{"name": "deploy", "arguments": map[string]any{"app": "web"},
		"_meta": map[string]any{"agentpdp/approval": step.Error.Data.DecisionID}}); a.Error != nil {
		t.Errorf("approved retry: %+v", a.Error)
	}
	if a := ask(7, "tools/call", map[string]any{"name": "fail", "arguments": map[string]any{}}); a.Error != nil || !strings.Contains(string(a.Result), `"isError":true`) {
		t.Errorf("a tool's own error passes through: %+v %s", a.Error, a.Result)
	}
	proxyIn.Close()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("proxy exit %d: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("proxy did not exit after its client closed")
	}

	b, _ := os.ReadFile(calls)
	if got := strings.Fields(string(b)); !slices.Equal(got, []string{"search", "deploy", "fail"}) {
		t.Errorf("calls that reached the server: %v (a refused call must never reach it)", got)
	}
	_, out, _ := runCLI(t, "log", "export", "--db", d.db(), "--kind", "outcome")
	var statuses []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var o struct{ Status string }
		json.Unmarshal([]byte(line), &o)
		statuses = append(statuses, o.Status)
	}
	if strings.Join(statuses, ",") != "success,skipped,skipped,success,error" {
		t.Errorf("outcomes: %v, want success (search), skipped (export), skipped (deploy), success (approved deploy), error (fail)", statuses)
	}
	_, out, _ = runCLI(t, "log", "query", "--db", d.db(), "--trace", "4bf92f3577b34da6a3ce929d0e0e4736", "--json")
	if !strings.Contains(out, `"tool_call_id":"3"`) || !strings.Contains(out, `MCPServer::\"agentpdp.test\"`) {
		t.Errorf("the call's trace, tool call id and server in the log:\n%s", out)
	}
}
