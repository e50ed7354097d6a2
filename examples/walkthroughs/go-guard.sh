# "## Go: wrap a function" of examples/README.md, against make run.
# Sourced by examples/walkthrough.sh; run it with: examples/walkthrough.sh go-guard
make_run

step "go run ./examples/go-guard: allow runs the function, step_up and deny do not"
out=$(go run ./examples/go-guard 2>&1) || fail "exit $?: $out"
echo "$out"
expect 'billing-bot → sql.query: allowed, ran the query' "$out"
expect 'deploy-bot → k8s.apply: step_up, approve decision ' "$out"
expect 'billing-bot → invoices.export: agentpdp: denied by restricted-data-needs-ticket' "$out"

step "the allowed call's outcome is logged: success"
rows=$(./bin/agentpdp log query --session go-guard-demo --json)
expect '"decision":"allow"' "$rows"
expect '"decision":"step_up"' "$rows"
expect '"decision":"deny"' "$rows"
allow=$(./bin/agentpdp log query --session go-guard-demo --decision allow --json --limit 1 | sed -n 's/.*"decision_id":"\([^"]*\)".*/\1/p')
show=$(./bin/agentpdp log show "$allow")
expect 'outcome     success for '"$allow" "$show"

step "./bin/agentpdp log tail shows the rows the README shows (seq, kind, decision, principal, action, resource, policies)"
tail=$(./bin/agentpdp log tail | awk '{ $2 = ""; $NF = ""; print }')
sample=$(grep '^[0-9][0-9]* *… ' examples/README.md | awk '{ $2 = ""; $NF = ""; print }')
[ -n "$sample" ] || fail "examples/README.md shows no log tail"
while IFS= read -r row; do
  # A here-string, not printf | grep -q: grep exits at its match, and
  # printf (line-buffered) writing the rows after it dies of SIGPIPE,
  # which pipefail makes a failure (it did, once under load).
  grep -Fxq -- "$row" <<< "$tail" || fail "the README's row \"$row\" is not in the log: $tail"
done <<< "$sample"
