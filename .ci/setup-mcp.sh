#!/usr/bin/env bash
# Installs what `make test-mcp` runs the MCP proxy against: the official MCP
# TypeScript SDK client and two reference servers from npm, at the versions
# pinned in pdp/mcpproxy/testdata/npm/package-lock.json, into that folder's
# node_modules (git-ignored). Node.js and npm come from Debian's packages
# when missing. Idempotent: does nothing when the pinned set is installed.
# Any failure is an error: the tests never skip for a missing install.
set -euo pipefail
cd "$(dirname "$0")/../pdp/mcpproxy/testdata/npm"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	if [ "$(id -u)" != 0 ]; then
		echo "setup-mcp: node or npm is missing and installing them needs root" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=600 update
	apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends nodejs npm
fi
if cmp -s package-lock.json node_modules/.agentpdp-lock 2>/dev/null; then
	exit 0
fi
for try in 1 2 3; do
	if npm ci --no-audit --no-fund --loglevel=error; then
		cp package-lock.json node_modules/.agentpdp-lock
		exit 0
	fi
	echo "setup-mcp: npm ci failed (try $try of 3)" >&2
	sleep 5
done
exit 1
