// Package layout holds no code: its test checks the repository's package
// boundaries, which the compiler cannot, such as that the Go client, the
// MCP proxy and the plugin SDK link none of the daemon's heavy parts.
package layout
