#!/usr/bin/env bash
# Ask a running agentpdp (make run) for an allow, a step_up and a deny with
# the default policy pack, then read them back from the log.
set -euo pipefail
sock=${AGENTPDP_SOCKET:-./var/agentpdp.sock}
admin=${AGENTPDP_ADMIN_SOCKET:-./var/agentpdp-admin.sock}

ask() {
  curl -sS --fail-with-body --unix-socket "$sock" -X POST http://agentpdp/v1/authorize \
    -H 'Content-Type: application/json' -d "$1"
  echo
}

# expect DECISION ANSWER: the walkthrough stops, non-zero, at the first step
# that does not do what examples/README.md says it does.
expect() {
  case "$2" in
    *"\"decision\":\"$1\""*) ;;
    *) echo "FAILED: expected $1, got: $2" >&2; exit 1 ;;
  esac
}

echo "# allow: billing-bot reads its own team's SQL tool"
answer=$(ask '{"principal": "Agent::\"billing-bot\"", "action": "Action::\"invoke_tool\"",
      "resource": "Tool::\"sql.query\"", "context": {"args": {"query": "select 1"}},
      "session_id": "s-42", "on_behalf_of": "alice@example.com"}')
echo "$answer"
expect allow "$answer"

echo "# step_up: deploy-bot writes to production"
write='{"principal": {"type": "Agent", "id": "deploy-bot"}, "action": {"type": "Action", "id": "invoke_tool"},
        "resource": {"type": "Tool", "id": "k8s.apply"}, "context": {"args": {"manifest": "web.yaml"}}'
answer=$(ask "$write}")
echo "$answer"
expect step_up "$answer"
id=$(printf '%s' "$answer" | sed -n 's/.*"decision_id":"\([^"]*\)".*/\1/p')

echo "# a human approves it, on the admin socket"
curl -sS --fail-with-body --unix-socket "$admin" -X POST "http://agentpdp/v1/decisions/$id/approval" \
  -d '{"approver": "carol@example.com", "approved": true, "comment": "CHG-1234"}'
echo

echo "# the agent retries with the approval: allow, once"
answer=$(ask "$write, \"approval\": \"$id\"}")
echo "$answer"
expect allow "$answer"
retry=$(printf '%s' "$answer" | sed -n 's/.*"decision_id":"\([^"]*\)".*/\1/p')

echo "# and reports what happened"
curl -sS --fail-with-body --unix-socket "$sock" -X POST "http://agentpdp/v1/decisions/$retry/outcome" \
  -d '{"status": "success", "detail": {"pods": 3}}'
echo

echo "# deny: restricted data without an incident ticket"
answer=$(ask '{"principal": "Agent::\"billing-bot\"", "action": "Action::\"invoke_tool\"",
      "resource": "Tool::\"invoices.export\"", "context": {"args": {"month": "2026-10"}}}')
echo "$answer"
expect deny "$answer"

echo "# the last three decisions, read back over the admin socket"
last=$(curl -sS --fail-with-body --unix-socket "$admin" 'http://agentpdp/v1/decisions?limit=3')
echo "$last"
case "$last" in *"$retry"*) ;; *) echo "FAILED: the approved retry $retry is not among the last decisions" >&2; exit 1 ;; esac
echo "# the whole story of the approved write: ./bin/agentpdp log show $retry"
