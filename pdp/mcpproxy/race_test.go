//go:build race

package mcpproxy_test

// raceEnabled: the race detector makes moving 100 MiB through the proxy take
// minutes; the tests that do run without it (make test-mcp).
const raceEnabled = true
