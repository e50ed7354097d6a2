# agentpdp: a fresh machine needs only `make run` and `make test`.
GO      ?= go
BIN     := bin/agentpdp
# cgo is required: the decision log uses mattn/go-sqlite3.
export CGO_ENABLED := 1

.PHONY: all build run test test-mcp test-pg test-otel bench-fleet test-short vet fmt bench fuzz soak examples proto clean test-browser screenshots test-spire

all: build

# -buildvcs=auto: agentpdp version shows the commit when built from a checkout.
build:
	$(GO) build -buildvcs=auto -o $(BIN) ./cmd/agentpdp

# Serve the default policy pack on ./var/agentpdp.sock (decisions) and
# ./var/agentpdp-admin.sock (admin), logging to ./var/decisions.db.
run: build
	./$(BIN) serve

# The whole suite with the race detector, including the cross-process crash
# tests and the full Cedar integration corpus.
# Progress per package as it runs (internal/testprogress reads go test -json).
test: vet
	bash -o pipefail -c '$(GO) test -race -count=1 -timeout 8m -json ./... | $(GO) run ./internal/testprogress'
	$(MAKE) test-mcp

# The MCP proxy against real MCP servers (@modelcontextprotocol/server-everything
# and server-filesystem) driven by the official TypeScript SDK client, all from
# npm at the versions pinned in pdp/mcpproxy/testdata/npm (installed by
# .ci/setup-mcp.sh, which fails rather than skips); and the proxy's 100 MiB
# tests, too slow under -race.
test-mcp:
	bash .ci/setup-mcp.sh
	AGENTPDP_MCP_NPM=$(CURDIR)/pdp/mcpproxy/testdata/npm $(GO) test -tags mcpnpm -count=1 -timeout 5m -run 'TestMCPProxy_RealServers' ./cmd/agentpdp
	$(GO) test -count=1 -timeout 5m -run 'TestLargeMessages' ./pdp/mcpproxy

# The fleet collector against a real PostgreSQL (Debian's, installed by
# .ci/setup-postgres.sh when missing): each test runs initdb and pg_ctl on a
# temporary directory with a Unix socket.
test-pg:
	bash .ci/setup-postgres.sh
	AGENTPDP_PG=1 $(GO) test -race -count=1 -timeout 15m -run 'Collector|Fleet' ./decisionlog/fleet/ ./cmd/agentpdp/

# The review console in a real browser: headless Chromium from Debian
# (installed by .ci/setup-browser.sh when missing) driven by chromedp,
# against a real daemon and console.
test-browser:
	bash .ci/setup-browser.sh
	$(GO) test -tags browser -count=1 -timeout 10m -run 'Browser' ./cmd/agentpdp

# Rewrite the README's console pictures (docs/console/*.png) with that test.
screenshots:
	bash .ci/setup-browser.sh
	AGENTPDP_SCREENSHOTS=$(CURDIR)/docs/console $(GO) test -tags browser -count=1 -timeout 10m -run 'TestConsole_Browser' ./cmd/agentpdp

# Rows/s into one and two collectors, bytes per row in PostgreSQL and
# fleet verify's rows/s (figures in docs/fleet.md).
bench-fleet:
	bash .ci/setup-postgres.sh
	AGENTPDP_PG=1 AGENTPDP_FLEET_MEASURE=1 $(GO) test -count=1 -timeout 20m -run TestFleet_Measure -v ./decisionlog/fleet/

# The OTLP sink against a real OpenTelemetry Collector, built from the
# collector's Go modules by .ci/setup-otel.sh into var/otelcol (once): mutual
# TLS, a body limit that refuses a row, typed attributes as they come out.
test-otel:
	AGENTPDP_OTELCOL="$(CURDIR)/$$(bash .ci/setup-otel.sh | tail -n 1)" \
		$(GO) test -tags otel -race -count=1 -timeout 10m -run 'RealCollector' -v ./plugins/sink/

# A real SPIRE server and agent (v1.13.3, built once into a cache directory
# by .ci/setup-spire.sh; minutes the first time) issue JWT-SVIDs through
# the Workload API, and agentpdp verifies them with the bundle from it.
SPIRE_BIN ?= $(HOME)/.cache/agentpdp/spire-v1.13.3
test-spire:
	SPIRE_BIN=$(SPIRE_BIN) bash .ci/setup-spire.sh
	SPIRE_BIN=$(SPIRE_BIN) $(GO) test -tags spire -count=1 -timeout 15m -run SPIRE ./pdp/identity ./cmd/agentpdp

test-short:
	$(GO) test -short -count=1 ./...

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# Benchmarks of the engine (against raw cedar.Authorize), the log writer and
# verification, and the socket end to end. agentpdp bench loads a running
# daemon instead: see the README.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

FUZZTIME ?= 30s
fuzz:
	$(GO) test ./pdp -run '^$$' -fuzz FuzzDecideRequest -fuzztime $(FUZZTIME)
	$(GO) test ./pdp/mcpproxy -run '^$$' -fuzz FuzzForwardedIsAuthorized -fuzztime $(FUZZTIME)
	$(GO) test ./pdp -run '^$$' -fuzz FuzzParseEntityRef -fuzztime $(FUZZTIME)
	$(GO) test ./pdp/wire -run '^$$' -fuzz FuzzRead -fuzztime $(FUZZTIME)
	$(GO) test ./pdp/wire -run '^$$' -fuzz FuzzMarshalRecordMatchesLibrary -fuzztime $(FUZZTIME)
	$(GO) test ./pdp/wire -run '^$$' -fuzz FuzzNormalizeMatchesLibrary -fuzztime $(FUZZTIME)
	$(GO) test ./pdp/wire -run '^$$' -fuzz FuzzDecodeRequestMatchesLibrary -fuzztime $(FUZZTIME)
	$(GO) test ./pdp/wire -run '^$$' -fuzz FuzzParseEntityRefMatchesLibrary -fuzztime $(FUZZTIME)
	$(GO) test ./pdp -run '^$$' -fuzz FuzzLoadPolicies -fuzztime $(FUZZTIME)
	$(GO) test ./decisionlog -run '^$$' -fuzz FuzzEntryCodec -fuzztime $(FUZZTIME)
	$(GO) test ./pdp/mask -run '^$$' -fuzz FuzzToken -fuzztime $(FUZZTIME)

# Long versions of the fault tests (10,000 reloads under load).
soak:
	AGENTPDP_SOAK=1 $(GO) test -race -count=1 -timeout 30m -run 'ReloadStorm|KillNine|DiskFull|SlowLoris' ./...

examples:
	$(GO) build -o bin/mcp-server ./examples/mcp-server
	$(GO) build -o bin/go-guard ./examples/go-guard
	$(GO) build -o bin/sink-plugin ./examples/sink-plugin
	$(GO) build -o bin/inventory-plugin ./examples/inventory-plugin
	$(GO) build -o bin/http-receiver ./examples/http-receiver

# Regenerate the plugin protocol's Go code (committed; needs protoc from
# Debian's protobuf-compiler, and protoc-gen-go, protoc-gen-go-grpc).
proto:
	cd plugins/internal/proto && protoc --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative agentpdp.proto

clean:
	rm -rf bin var
