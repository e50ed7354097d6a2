# "## MCP: put a server behind the proxy" of examples/README.md, against
# make run. Sourced by examples/walkthrough.sh; run it with:
# examples/walkthrough.sh mcp
make_run

step "go build -o bin/mcp-server ./examples/mcp-server"
go build -o bin/mcp-server ./examples/mcp-server

step "the proxy in front of it: search_docs allowed, deploy_service needs approval, export_data denied"
out=$(./bin/agentpdp mcp-proxy --principal 'Agent::"deploy-bot"' --filter-tools -- ./bin/mcp-server <<'JSONRPC'
{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{}}}
{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"search_docs","arguments":{"query":"refunds"}}}
{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"deploy_service","arguments":{"service":"web"}}}
{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"export_data","arguments":{"table":"invoices"}}}
{"jsonrpc":"2.0","id":5,"method":"tools/list"}
JSONRPC
) || fail "the proxy exited $?: $out"
echo "$out"
answer() { printf '%s\n' "$out" | grep "\"id\":$1," || fail "no answer to id $1 in: $out"; }
expect '"serverInfo":{"name":"agentpdp-example"' "$(answer 1)"
expect '"text":"3 documents match \"refunds\""' "$(answer 2)"
expect '"code":-32002' "$(answer 3)"
expect '"policy":"mcp-deploy-needs-approval"' "$(answer 3)"
expect '"code":-32001' "$(answer 4)"
expect 'denied by policy no_permit' "$(answer 4)"
step "tools/list with --filter-tools: search_docs and deploy_service, not export_data"
expect '"name":"search_docs"' "$(answer 5)"
expect '"name":"deploy_service"' "$(answer 5)"
case "$(answer 5)" in *export_data*) fail "export_data is denied, yet listed: $(answer 5)" ;; esac
id=$(answer 3 | sed -n 's/.*"decision_id":"\([^"]*\)".*/\1/p')
[ -n "$id" ] || fail "the step-up carries no decision id: $(answer 3)"

step "the allowed call ran (outcome success); the refused ones never reached the server (outcome skipped)"
rows=$(./bin/agentpdp log tail)
expect 'decision    allow   Agent::"deploy-bot" Action::"search_docs" MCPServer::"mcp-server" [mcp-search-docs]' "$rows"
expect 'outcome     success for' "$rows"
[ "$(printf '%s\n' "$rows" | grep -c 'outcome     success')" -eq 1 ] || fail "want one call run (search_docs): $rows"
[ "$(printf '%s\n' "$rows" | grep -c 'outcome     skipped')" -eq 2 ] || fail "want two calls refused, not run: $rows"

step "approve the step-up on the admin socket, then retry with _meta agentpdp/approval: it runs"
curl -sS --fail-with-body --unix-socket var/agentpdp-admin.sock -X POST "http://agentpdp/v1/decisions/$id/approval" \
  -d '{"approver": "carol@example.com", "approved": true}' > approval.log 2>&1 || fail "approval: $(cat approval.log)"
out=$(printf '%s\n' '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{}}}' \
  '{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"deploy_service","arguments":{"service":"web"},"_meta":{"agentpdp/approval":"'"$id"'"}}}' |
  ./bin/agentpdp mcp-proxy --principal 'Agent::"deploy-bot"' --filter-tools -- ./bin/mcp-server) || fail "the proxy exited $?: $out"
expect '"text":"deployed web"' "$(answer 5)"
