# "## Shipping the log upstream" of examples/README.md: at-least-once
# shipping through an outage of the receiver. Its daemon has its own sockets
# and log under ./var/ship/. Sourced by examples/walkthrough.sh; run it with:
# examples/walkthrough.sh shipping
#
# The README's receiver listens on 127.0.0.1:18080; here the port is a free
# one picked at random ($port), so that two runs at once do not meet. The
# README's bench runs for 30 s, time for a person to type the steps; here it
# is stopped as soon as they are done.

# free_port: a port nothing listens on, picked at random.
free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$(( 20000 + RANDOM % 40000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  return 1
}
stats() { curl -sS --fail --max-time 5 "http://127.0.0.1:$port/stats"; }
# sink FIELD: the upstream sink's FIELD in GET /v1/status (a number).
sink() {
  curl -sS --max-time 5 --unix-socket var/ship/a-admin.sock http://agentpdp/v1/status |
    tr -d '\n ' | sed -n 's/.*"sink":"upstream"[^}]*"'"$1"'":\([0-9]*\).*/\1/p'
}
last_seq() {
  curl -sS --max-time 5 --unix-socket var/ship/a-admin.sock http://agentpdp/v1/status |
    tr -d '\n ' | sed -n 's/.*"last_seq":\([0-9]*\).*/\1/p'
}
rows_past() { local n; n=$(sink shipped); [ -n "$n" ] && [ "$n" -gt "$1" ]; }

# make run in another terminal, as the README has it: this walkthrough runs
# beside it, and leaves it alone (checked at the end).
make_run

step "make build examples; the receiver"
make build examples
mkdir -p var/ship
# Another program may take the port between the pick and the listen: then
# the receiver exits, and it starts again on another.
for attempt in 1 2 3 4 5; do
  port=$(free_port) || fail "no free port for the receiver"
  ./bin/http-receiver -addr 127.0.0.1:$port -out ./var/ship/received.jsonl 2> receiver.log &
  receiver=$!
  for _ in $(seq 1 200); do
    stats > /dev/null 2>&1 && break 2
    kill -0 "$receiver" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$receiver" 2>/dev/null && fail "the receiver runs but does not answer on 127.0.0.1:$port"
  wait "$receiver" 2>/dev/null || true # reaped: the next one is job %1, as in the README
  [ "$attempt" -lt 5 ] || fail "the receiver did not start: $(cat receiver.log)"
done
echo "# $walk: the receiver listens on 127.0.0.1:$port"

step "a daemon shipping to it, under ./var/ship/, beside make run"
printf 'request_entities: trusted\nsinks:\n  - {name: upstream, type: http, url: "http://127.0.0.1:'"$port"'/ingest"}\n' > var/ship/ship.yaml
./bin/agentpdp serve --config var/ship/ship.yaml --socket var/ship/a.sock \
  --admin-socket var/ship/a-admin.sock --db var/ship/decisions.db 2> ship-serve.log &
eventually 20 sockets var/ship/a.sock var/ship/a-admin.sock

step "a second daemon on the same sockets or log refuses to start"
if second=$(./bin/agentpdp serve --config var/ship/ship.yaml --socket var/ship/a.sock --admin-socket var/ship/a-admin.sock --db var/ship/decisions.db 2>&1); then
  fail "it started: $second"
fi
expect "another agentpdp is serving on it" "$second"
if second=$(./bin/agentpdp serve --config var/ship/ship.yaml --socket var/ship/b.sock --admin-socket var/ship/b-admin.sock --db var/ship/decisions.db 2>&1); then
  fail "it started: $second"
fi
expect "the decision log is already open for writing" "$second"

step "bench: decisions keep flowing, and rows arrive at the receiver"
./bin/agentpdp bench --socket var/ship/a.sock -c 8 -d 30s > bench.log 2>&1 &
bench=$!
eventually 30 rows_past 100

step "kill %1: the receiver is gone, and the sink's lag grows"
kill %1
wait %1 2>/dev/null || true
if stats >/dev/null 2>&1; then fail "the receiver still answers"; fi
lag=$(sink lag)
curl -s --unix-socket var/ship/a-admin.sock http://agentpdp/v1/status > status.json
expect '"sink":"upstream"' "$(cat status.json)"
sleep 1
grew() { [ "$(sink lag)" -gt "$lag" ]; }
eventually 10 grew
failed() { [ "$(sink failures)" -gt 0 ]; }
eventually 10 failed
shipped=$(sink shipped)

step "restore the receiver: every row arrives, once, with no gap"
./bin/http-receiver -addr 127.0.0.1:$port -out ./var/ship/received.jsonl 2>> receiver.log &
eventually 20 stats
kill "$bench" 2>/dev/null || true
wait "$bench" 2>/dev/null || true
# Every row once: rows = the log's last seq, and no missing seqs.
all_arrived() {
  local last received
  [ "$(sink lag)" = 0 ] && [ "$(sink shipped)" -gt "$shipped" ] || return 1
  last=$(last_seq)
  received=$(stats)
  case "$received" in *"\"rows\":$last,\"last_seq\":$last,\"missing_seqs\":[]"*) ;; *) echo "log's last seq $last, received: $received"; return 1 ;; esac
}
eventually 60 all_arrived
curl -s http://127.0.0.1:$port/stats

step "make run's daemon is untouched: still serving, and its log holds none of these rows"
curl -sS --max-time 5 --unix-socket var/agentpdp-admin.sock http://agentpdp/v1/status > /dev/null || fail "make run's daemon no longer answers"
[ -z "$(./bin/agentpdp log query --json)" ] || fail "rows in make run's log (./var/decisions.db)"
