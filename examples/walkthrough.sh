#!/usr/bin/env bash
# Runs a walkthrough of examples/README.md against a daemon of its own, in a
# temporary directory beside (never on top of) `make run`: its own sockets,
# database and keys. Exits non-zero when a step does not do what the text
# says. make test runs every walkthrough this way.
#
#   examples/walkthrough.sh curl          # examples/curl/authorize.sh
#
# AGENTPDP is the agentpdp binary (default ./bin/agentpdp; make build).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
agentpdp=${AGENTPDP:-$repo/bin/agentpdp}
case "${1:-}" in
  curl) script=$here/curl/authorize.sh ;;
  *) echo "usage: $0 curl" >&2; exit 2 ;;
esac

dir=$(mktemp -d /tmp/agentpdp-walk.XXXXXX)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT
cp -r "$repo/policies" "$dir/policies"
cat > "$dir/agentpdp.yaml" <<YAML
policies: $dir/policies
db: $dir/var/decisions.db
socket: $dir/var/a.sock
admin_socket: $dir/var/admin.sock
hmac_key: $dir/var/hmac.key
signing_key: $dir/var/signing.key
YAML
"$agentpdp" serve --config "$dir/agentpdp.yaml" 2> "$dir/serve.log" &
pid=$!
for _ in $(seq 1 200); do
  [ -S "$dir/var/a.sock" ] && [ -S "$dir/var/admin.sock" ] && break
  if ! kill -0 "$pid" 2>/dev/null; then cat "$dir/serve.log" >&2; echo "FAILED: the daemon did not start" >&2; exit 1; fi
  sleep 0.1
done
AGENTPDP_SOCKET=$dir/var/a.sock AGENTPDP_ADMIN_SOCKET=$dir/var/admin.sock bash "$script"
echo "ok: walkthrough $1"
