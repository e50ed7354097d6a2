#!/usr/bin/env bash
# Builds SPIRE's server and agent (github.com/spiffe/spire v1.13.3) from the
# Go module proxy into a cache directory, once: `make test-spire` runs them.
# Idempotent: binaries already built at this version are kept.
#
#   SPIRE_BIN   where the binaries go (default ~/.cache/agentpdp/spire-v1.13.3)
set -euo pipefail

version=v1.13.3
bin="${SPIRE_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/agentpdp/spire-$version}"
mkdir -p "$bin"

have() {
	[ -x "$bin/spire-server" ] && [ -x "$bin/spire-agent" ] &&
		"$bin/spire-server" --version 2>&1 | grep -q "${version#v}" &&
		"$bin/spire-agent" --version 2>&1 | grep -q "${version#v}"
}

if have; then
	echo "spire $version: $bin (cached)"
	exit 0
fi

echo "spire $version: building into $bin (takes a few minutes the first time)"
# SPIRE's go.mod has replace directives, which `go install pkg@version`
# refuses; then build from the module as the proxy serves it.
if ! GOBIN="$bin" CGO_ENABLED=1 go install \
	"github.com/spiffe/spire/cmd/spire-server@$version" \
	"github.com/spiffe/spire/cmd/spire-agent@$version" 2>"$bin/install.log"; then
	echo "go install refused ($(head -c 300 "$bin/install.log" | tr '\n' ' ')); building from the module cache"
	dir=$(go mod download -json "github.com/spiffe/spire@$version" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	if [ -z "$dir" ] || [ ! -d "$dir" ]; then
		echo "go mod download github.com/spiffe/spire@$version: no module directory" >&2
		exit 1
	fi
	# The module cache is read-only; go build writes only to the build cache
	# and -o. -mod=mod lets it fetch what go.sum lists but the cache lacks.
	(cd "$dir" && CGO_ENABLED=1 GOFLAGS=-mod=mod go build -trimpath -o "$bin/spire-server.tmp" ./cmd/spire-server)
	(cd "$dir" && CGO_ENABLED=1 GOFLAGS=-mod=mod go build -trimpath -o "$bin/spire-agent.tmp" ./cmd/spire-agent)
	mv "$bin/spire-server.tmp" "$bin/spire-server"
	mv "$bin/spire-agent.tmp" "$bin/spire-agent"
fi
rm -f "$bin/install.log"
if ! have; then
	echo "spire $version: built binaries do not report version ${version#v}" >&2
	"$bin/spire-server" --version >&2 || true
	exit 1
fi
echo "spire $version: $bin"
