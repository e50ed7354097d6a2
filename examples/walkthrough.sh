#!/usr/bin/env bash
# Runs one walkthrough of examples/README.md, with the commands the README
# shows, in a temporary directory of its own beside (never on top of)
# `make run`: its own ./var (sockets, database, keys), ./bin, ./examples and
# ./policies. Each step checks what the text says it does (a decision, an
# exit code, a row in the log, a row at the receiver, a plugin's entity); the
# first that does not exits non-zero with "FAILED: <walkthrough>: <step>: …".
# Every process it starts is stopped on exit. make test runs every one.
#
#   examples/walkthrough.sh curl       # examples/walkthroughs/curl.sh
#   examples/walkthrough.sh all        # each in turn
#
# The binaries come from `make build examples` in the checkout (run first), or
# from AGENTPDP_WALK_BIN, a directory holding agentpdp and the example
# binaries (make test's Go test builds them once). KEEP=1 keeps the directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
names=$(cd "$here/walkthroughs" && ls ./*.sh | sed 's|^\./||; s|\.sh$||' | tr '\n' ' ')
case "${1:-}" in
  all)
    # Built once for all of them.
    if [ -z "${AGENTPDP_WALK_BIN:-}" ]; then
      make -s -C "$repo" build examples >&2
      export AGENTPDP_WALK_BIN=$repo/bin
    fi
    for n in $names; do "$0" "$n"; done
    exit 0 ;;
  "") echo "usage: $0 NAME|all (NAME: $names)" >&2; exit 2 ;;
esac
walk=$1
# The README's commands use the default sockets, or set these themselves.
unset AGENTPDP_SOCKET AGENTPDP_ADMIN_SOCKET
script=$here/walkthroughs/$walk.sh
[ -f "$script" ] || { echo "$0: no walkthrough \"$walk\" (there are: $names)" >&2; exit 2; }

bindir=${AGENTPDP_WALK_BIN:-}
if [ -z "$bindir" ]; then
  make -s -C "$repo" build examples >&2
  bindir=$repo/bin
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/agentpdp-walk.XXXXXX")
cleanup() {
  local rc=$?
  # Every background job this walkthrough started (daemons, receiver, bench).
  for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done
  for p in $(jobs -p); do wait "$p" 2>/dev/null || true; done
  if [ -s "$dir/make-run.pid" ]; then
    p=$(cat "$dir/make-run.pid")
    kill "$p" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  fi
  if [ "$rc" -ne 0 ] || [ -n "${KEEP:-}" ]; then
    for f in "$dir"/*.log; do [ -s "$f" ] && { echo "--- $f (last lines)" >&2; tail -n 20 "$f" >&2; }; done
  fi
  if [ -n "${KEEP:-}" ]; then echo "kept $dir" >&2; else rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The checkout as the README's commands see it: sources linked (read only),
# examples and policies copied (Python writes __pycache__ beside its files,
# and "cd examples/python && ../../var" must land in this directory's var).
for f in go.mod go.sum Makefile cmd pdp decisionlog plugins internal; do ln -s "$repo/$f" "$dir/$f"; done
cp -r "$repo/examples" "$repo/policies" "$dir/"
mkdir "$dir/bin"
for b in agentpdp go-guard http-receiver inventory-plugin mcp-server sink-plugin; do
  [ -x "$bindir/$b" ] || { echo "$0: $bindir/$b is missing: run make build examples" >&2; exit 1; }
  ln -s "$bindir/$b" "$dir/bin/$b"
done
cd "$dir"

current="start"
# step TEXT: names the step the next commands belong to.
step() { current=$1; echo "# $walk: $1"; }
# fail MESSAGE: the current step did not do what the README says.
fail() { echo "FAILED: $walk: $current: $*" >&2; exit 1; }
# expect NEEDLE TEXT: TEXT must contain NEEDLE.
expect() { case "$2" in *"$1"*) ;; *) fail "expected $1 in: $2" ;; esac; }
# eventually SECONDS COMMAND…: retries COMMAND every 0.1 s until it succeeds.
eventually() {
  local n=$(( $1 * 10 )); shift
  for _ in $(seq 1 "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  "$@" || fail "still not true after a wait: $*"
}
sockets() { for s; do [ -S "$s" ] || return 1; done; }
# make build examples, as the README says: already done (above, or by
# make test, once for every walkthrough), so here it only checks ./bin.
make() {
  for t; do case $t in build|examples) ;; *) fail "make $t is not part of a walkthrough" ;; esac; done
  [ -x bin/agentpdp ] || fail "make build examples: no bin/agentpdp"
}
# make_run: what `make run` starts, in this directory: the default policy
# pack, ./var/agentpdp.sock, ./var/agentpdp-admin.sock, ./var/decisions.db.
# It runs as in another terminal: not one of this shell's jobs, so that a
# walkthrough's `kill %1` means what it means in the README.
make_run() {
  step "make run"
  ( ./bin/agentpdp serve 2> make-run.log & echo $! > make-run.pid )
  eventually 20 sockets var/agentpdp.sock var/agentpdp-admin.sock
}

# shellcheck source=/dev/null
. "$script"
echo "ok: walkthrough $walk"
