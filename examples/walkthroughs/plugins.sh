# "## Plugins" of examples/README.md: the inventory entity provider and the
# sink plugin, wired by examples/plugins.yaml, with a daemon of their own
# under ./var/plugins/. Sourced by examples/walkthrough.sh; run it with:
# examples/walkthrough.sh plugins
status() { curl -sS --max-time 5 --unix-socket var/plugins/a-admin.sock http://agentpdp/v1/status; }

# make run in another terminal, as the README has it: this walkthrough runs
# beside it, and leaves it alone (checked at the end).
make_run

step "make build examples; a daemon with the plugins, under ./var/plugins/"
make build examples
./bin/agentpdp serve --config examples/plugins.yaml 2> plugins-serve.log &
eventually 20 sockets var/plugins/a.sock var/plugins/a-admin.sock

step "examples/curl/authorize.sh against it: the same answers as against make run"
export AGENTPDP_SOCKET=var/plugins/a.sock AGENTPDP_ADMIN_SOCKET=var/plugins/a-admin.sock
examples/curl/authorize.sh > plugins-curl.log 2>&1 || fail "exit $?: $(tail -n 3 plugins-curl.log)"

step "report-bot, known only to the inventory: allowed"
answer=$(curl -s --unix-socket var/plugins/a.sock http://agentpdp/v1/authorize \
  -d '{"principal": "Agent::\"report-bot\"", "action": "Action::\"invoke_tool\"", "resource": "Tool::\"sql.query\""}')
echo "$answer"
expect '"decision":"allow"' "$answer"
expect '"policy":"agents-may-invoke-tools"' "$answer"

step "report-bot claiming high trust: refused, the inventory describes it"
answer=$(curl -s --unix-socket var/plugins/a.sock http://agentpdp/v1/authorize \
  -d '{"principal": "Agent::\"report-bot\"", "action": "Action::\"invoke_tool\"", "resource": "Tool::\"sql.query\"",
       "entities": [{"uid": {"type": "Agent", "id": "report-bot"}, "attrs": {"trust": "high"}, "parents": []}]}')
echo "$answer"
expect 'Agent::\"report-bot\" is known to a trusted source (an entity provider)' "$answer"

step "the row records what the inventory answered"
rows=$(./bin/agentpdp log query --db var/plugins/decisions.db --principal report-bot --json)
expect '"provided_entities":[{"uid":{"type":"Agent","id":"report-bot"}' "$rows"

step "both sinks, the file and the plugin, get every row"
every_row() {
  local last
  last=$(status | tr -d '\n ' | sed -n 's/.*"last_seq":\([0-9]*\).*/\1/p')
  [ "$(wc -l < var/plugins/archive.jsonl)" -eq "$last" ] && [ "$(wc -l < var/plugins/plugin-sink.jsonl)" -eq "$last" ]
}
eventually 20 every_row
wc -l var/plugins/archive.jsonl var/plugins/plugin-sink.jsonl

step "make run's daemon is untouched: still serving, and its log holds none of these rows"
curl -sS --max-time 5 --unix-socket var/agentpdp-admin.sock http://agentpdp/v1/status > /dev/null || fail "make run's daemon no longer answers"
[ -z "$(./bin/agentpdp log query --json)" ] || fail "rows in make run's log (./var/decisions.db)"
