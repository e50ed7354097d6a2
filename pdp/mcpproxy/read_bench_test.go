package mcpproxy

import "testing"

// BenchmarkReadToolsCall is the proxy's own cost of reading one tools/call
// strictly: re-encoding it, its JSON-RPC members, its params and its id.
func BenchmarkReadToolsCall(b *testing.B) {
	line := []byte(`{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"search","arguments":{"q":"invoices","limit":10},"_meta":{"progressToken":42}}}`)
	b.ReportAllocs()
	for b.Loop() {
		raw, err := canonical(line, DefaultMaxDepth)
		if err != nil {
			b.Fatal(err)
		}
		m, err := parseMessage(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := parseCallParams(m.params); err != nil {
			b.Fatal(err)
		}
		if _, err := idKey(m.id); err != nil {
			b.Fatal(err)
		}
	}
}
