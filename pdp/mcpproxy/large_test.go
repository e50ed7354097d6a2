//go:build !race

package mcpproxy_test

// Tests that move 100+ MiB: the race detector makes them take minutes, so
// they are built only without it (make test-mcp runs them).

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp/mcpproxy"
)

// TestLargeMessages: arguments of 1-10 MiB and a server answer over 64 MiB
// go through whole; the daemon's body limit is a logged deny,
// request_too_large, not an unlogged refusal.
func TestLargeMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 100+ MiB")
	}
	d := startDaemon(t, 16<<20, decisionlog.DurabilityNormal)
	s := newSession(t, d, func(s *standIn, line []byte) {
		var m struct {
			ID     json.RawMessage
			Params struct{ Name string }
		}
		json.Unmarshal(line, &m)
		if m.Params.Name == "big" {
			text := strings.Repeat("x", 65<<20)
			s.write([]byte(`{"jsonrpc":"2.0","id":` + string(m.ID) + `,"result":{"content":[{"type":"text","text":"` + text + `"}]}}`))
			return
		}
		echoServer(s, line)
	}, nil)
	for i, size := range []int{1 << 20, 5 << 20, 10 << 20} {
		arg := strings.Repeat("a", size)
		s.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo","arguments":{"blob":"%s"}}}`, i, arg))
		if got := s.received(); len(got) < size {
			t.Fatalf("server received %d bytes for %d bytes of arguments", len(got), size)
		}
		if a := parseAnswer(t, s.next()); a.Error != nil {
			t.Fatalf("%d MiB of arguments: %+v", size>>20, a.Error)
		}
	}
	s.send(`{"jsonrpc":"2.0","id":"big","method":"tools/call","params":{"name":"big"}}`)
	s.received()
	a := parseAnswer(t, s.next())
	if a.Error != nil || len(a.Result) < 65<<20 {
		t.Fatalf("a 65 MiB answer: error %+v, %d bytes", a.Error, len(a.Result))
	}
	// Over the daemon's limit (16 MiB here): a logged deny.
	s.send(`{"jsonrpc":"2.0","id":"huge","method":"tools/call","params":{"name":"echo","arguments":{"blob":"` + strings.Repeat("b", 17<<20) + `"}}}`)
	a = parseAnswer(t, s.next())
	if a.Error == nil || a.Error.Code != mcpproxy.CodeDenied || !strings.Contains(a.Error.Message, "request_too_large") {
		t.Fatalf("over the daemon's body limit: %+v", a)
	}
	s.ping()
	s.expectPingOnly()
	ds := decisions(d.rows(t))
	last := ds[len(ds)-1]
	if last["decision"] != "deny" || reasonOf(last) != "request_too_large" || last["action"] != `Action::"echo"` ||
		last["request"].(map[string]any)["tool_call_id"] != `"huge"` {
		t.Errorf("the oversize call's decision: %v", last)
	}
}
