# The curl walkthrough of examples/README.md ("## curl"), against make run.
# Sourced by examples/walkthrough.sh, which provides step, fail, expect,
# eventually and make_run; run it with: examples/walkthrough.sh curl
make_run

step "examples/curl/authorize.sh: allow, step_up, approval, allowed retry, outcome, deny"
# authorize.sh checks each answer itself and exits non-zero at the first
# that differs from the README's table.
examples/curl/authorize.sh > curl.log 2>&1 || fail "exit $?: $(tail -n 3 curl.log)"

step "./bin/agentpdp log tail shows every decision and its outcome"
tail=$(./bin/agentpdp log tail)
for row in \
  'decision    allow   Agent::"billing-bot" Action::"invoke_tool" Tool::"sql.query" [agents-may-invoke-tools]' \
  'decision    step_up Agent::"deploy-bot" Action::"invoke_tool" Tool::"k8s.apply" [prod-writes-need-approval]' \
  'approval    approved by carol@example.com' \
  'decision    allow   Agent::"deploy-bot" Action::"invoke_tool" Tool::"k8s.apply" [prod-writes-need-approval,approval]' \
  'outcome     success for' \
  'decision    deny    Agent::"billing-bot" Action::"invoke_tool" Tool::"invoices.export" [restricted-data-needs-ticket]'; do
  expect "$row" "$tail"
done

step "the approval is used once: the same retry again is denied (approval_invalid, already used)"
retry=$(./bin/agentpdp log query --decision allow --resource k8s.apply --json --limit 1)
id=$(printf '%s' "$retry" | sed -n 's/.*"approval":{"id":"\([^"]*\)".*/\1/p')
[ -n "$id" ] || fail "the allowed retry's row names no approval: $retry"
again=$(curl -sS --unix-socket var/agentpdp.sock -X POST http://agentpdp/v1/authorize -d '{"principal": "Agent::\"deploy-bot\"", "action": "Action::\"invoke_tool\"", "resource": "Tool::\"k8s.apply\"", "approval": "'"$id"'"}')
expect '"decision":"deny"' "$again"
expect "approval $id was already used" "$again"
