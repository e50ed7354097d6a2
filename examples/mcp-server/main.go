// Command mcp-server is a small Model Context Protocol server on stdio, to
// try agentpdp mcp-proxy with: three tools, search_docs, deploy_service and
// export_data, that the default policy pack allows, steps up and denies.
//
//	./bin/agentpdp mcp-proxy --principal 'Agent::"deploy-bot"' -- go run ./examples/mcp-server
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
)

type request struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params struct {
		Name      string         `json:"name"`
		Arguments map[string]any `json:"arguments"`
	} `json:"params"`
}

var tools = []map[string]any{
	{"name": "search_docs", "description": "Search the team's documentation.",
		"inputSchema": map[string]any{"type": "object", "properties": map[string]any{"query": map[string]any{"type": "string"}}, "required": []string{"query"}}},
	{"name": "deploy_service", "description": "Deploy a service to production.",
		"inputSchema": map[string]any{"type": "object", "properties": map[string]any{"service": map[string]any{"type": "string"}}, "required": []string{"service"}}},
	{"name": "export_data", "description": "Export a table as CSV.",
		"inputSchema": map[string]any{"type": "object", "properties": map[string]any{"table": map[string]any{"type": "string"}}, "required": []string{"table"}}},
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), 16<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil || len(req.ID) == 0 {
			continue // notifications need no answer
		}
		answer := map[string]any{"jsonrpc": "2.0", "id": req.ID}
		switch req.Method {
		case "initialize":
			answer["result"] = map[string]any{
				"protocolVersion": "2025-06-18",
				"capabilities":    map[string]any{"tools": map[string]any{}},
				"serverInfo":      map[string]any{"name": "agentpdp-example", "version": "1.0.0"},
			}
		case "ping":
			answer["result"] = map[string]any{}
		case "tools/list":
			answer["result"] = map[string]any{"tools": tools}
		case "tools/call":
			answer["result"] = map[string]any{"content": []map[string]any{{"type": "text", "text": call(req.Params.Name, req.Params.Arguments)}}}
		default:
			answer["error"] = map[string]any{"code": -32601, "message": "method not found: " + req.Method}
		}
		if err := out.Encode(answer); err != nil {
			fmt.Fprintln(os.Stderr, "mcp-server:", err)
			return
		}
	}
}

func call(name string, args map[string]any) string {
	switch name {
	case "search_docs":
		return fmt.Sprintf("3 documents match %q", args["query"])
	case "deploy_service":
		return fmt.Sprintf("deployed %v", args["service"])
	case "export_data":
		return fmt.Sprintf("exported %v.csv", args["table"])
	}
	return "no such tool: " + name
}
