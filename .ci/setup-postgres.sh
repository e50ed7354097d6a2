#!/usr/bin/env bash
# PostgreSQL for make test-pg: Debian's server package, installed only when
# no pg_ctl is found. The tests run initdb and pg_ctl themselves, on a
# temporary directory, as the postgres user the package creates.
set -euo pipefail
if command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
	exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
$sudo apt-get -o DPkg::Lock::Timeout=600 update
$sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends postgresql
# The package starts a cluster of its own; the tests do not use it.
$sudo service postgresql stop >/dev/null 2>&1 || true
