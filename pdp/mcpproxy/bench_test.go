package mcpproxy_test

import (
	"fmt"
	"testing"

	"github.com/agentpdp/agentpdp/decisionlog"
)

// BenchmarkToolsCall is one allowed tools/call through the proxy and back:
// the authorization (a logged decision), the server's answer and the
// outcome (a logged row). BenchmarkDirect is the same call without the
// proxy; the difference is the proxy's overhead per call.
func BenchmarkToolsCall(b *testing.B) {
	d := startDaemon(b, 0, decisionlog.DurabilityNormal)
	s := newSession(b, d, echoServer, nil)
	b.ResetTimer()
	for i := range b.N {
		s.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"search","arguments":{"q":"invoices"}}}`, i))
		s.next()
		<-s.server.got
	}
}

func BenchmarkDirect(b *testing.B) {
	srv := &standIn{got: make(chan []byte, 1)}
	r, w := newLinePipe()
	srv.out = w
	b.ResetTimer()
	for i := range b.N {
		line := fmt.Appendf(nil, `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"search","arguments":{"q":"invoices"}}}`, i)
		go echoServer(srv, line)
		if _, err := r.ReadBytes('\n'); err != nil {
			b.Fatal(err)
		}
	}
}
