# "## Python: wrap a tool" of examples/README.md, against make run.
# Sourced by examples/walkthrough.sh; run it with: examples/walkthrough.sh python
command -v python3 >/dev/null || fail "python3 is not installed (3.8 or later)"
make_run

step "python3 examples/python/example_agent.py: allowed, denied, needs approval"
out=$(python3 examples/python/example_agent.py 2>&1) || fail "exit $?: $out"
echo "$out"
expect "sql_query: [{'invoices': 42}]" "$out"
expect "export_invoices: denied by restricted-data-needs-ticket (decision " "$out"
expect "k8s_apply: needs approval (production change needs approval); decision " "$out"

step "only the allowed tool ran, and its outcome is logged: success"
allow=$(./bin/agentpdp log query --session demo-session --decision allow --json)
expect '"resource":"Tool::\"sql.query\""' "$allow"
id=$(printf '%s' "$allow" | sed -n 's/.*"decision_id":"\([^"]*\)".*/\1/p')
expect "outcome     success for $id" "$(./bin/agentpdp log show "$id")"
[ "$(./bin/agentpdp log query --session demo-session --json | wc -l)" -eq 3 ] || fail "want 3 decisions in session demo-session"

step "the client's tests, by hand against make run"
cd examples/python && AGENTPDP_SOCKET=../../var/agentpdp.sock \
  AGENTPDP_ADMIN_SOCKET=../../var/agentpdp-admin.sock python3 -m unittest -v > ../../python-unittest.log 2>&1 ||
  fail "exit $?: $(tail -n 5 ../../python-unittest.log)"
cd ../..
expect "OK" "$(tail -n 1 python-unittest.log)"

step "the README's Python snippet runs as shown: billing-bot's sql_query, allowed, outcome logged"
sed -n '/^```python$/,/^```$/p' examples/README.md | sed '1d;$d' > readme-snippet.py
[ -s readme-snippet.py ] || fail "examples/README.md shows no python snippet"
PYTHONPATH=examples/python python3 readme-snippet.py > readme-snippet.log 2>&1 || fail "exit $?: $(tail -n 5 readme-snippet.log)"
id=$(./bin/agentpdp log query --session s-42 --decision allow --json --limit 1 | sed -n 's/.*"decision_id":"\([^"]*\)".*/\1/p')
[ -n "$id" ] || fail "no allowed decision in session s-42"
expect "outcome     success for $id" "$(./bin/agentpdp log show "$id")"
