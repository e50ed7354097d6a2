package mcpproxy_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/agentpdp/agentpdp/decisionlog"
)

// FuzzForwardedIsAuthorized sends one client line through the proxy and
// compares what the server received with what was authorized: every
// tools/call the server got has an allow decision for the very tool and id
// that a lax reader (encoding/json v1, which matches names without regard to
// case and keeps the last of duplicates) finds in it, a strict reader finds
// the same name, id and arguments, and the bytes are canonical JSON.
func FuzzForwardedIsAuthorized(f *testing.F) {
	for _, seed := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"env":"dev"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-env","Name":"echo","arguments":{}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"env":"dev"},"Arguments":{"env":"prod"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","Method":"ping","params":{"name":"echo"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call","params":{"name":"echo"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"env":"dev","env":"prod"}}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"search"}}]`,
		`{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo"}}`,
		`{"jsonrpc":"2.0","id":"\u0061","method":"tools/call","params":{"name":"ech\u006f","arguments":{"q":"\ud83d\ude00"}}}`,
		`{"jsonrpc":"2.0","id":1e1,"method":"tools/call","params":{"name":"echo","arguments":{"n":1.0}}}`,
		"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"env\":\"dev\xff\"}}}",
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"env":"prod"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","_meta":{"progressToken":1}}}`,
	} {
		f.Add(seed)
	}
	d := startDaemon(f, 0, decisionlog.DurabilityNormal)
	f.Fuzz(func(t *testing.T, line string) {
		if strings.ContainsAny(line, "\n\r") {
			return // one message per line
		}
		before := len(d.rows(t))
		s := newSession(t, d, echoServer, nil)
		s.send(line)
		s.close()
		var allowed []map[string]any
		for _, r := range d.rows(t)[before:] {
			if r["kind"] == "decision" && r["decision"] == "allow" {
				allowed = append(allowed, r)
			}
		}
		var calls int
		for _, got := range s.server.lines() {
			var v any
			if err := jsonv2.Unmarshal(got, &v); err != nil {
				t.Fatalf("forwarded bytes are not strict JSON: %s: %v", got, err)
			}
			var msgs []json.RawMessage
			if got[0] == '[' {
				json.Unmarshal(got, &msgs)
			} else {
				msgs = []json.RawMessage{got}
			}
			for _, m := range msgs {
				var lax, strict struct {
					ID     any    `json:"id"`
					Method string `json:"method"`
					Params struct {
						Name      string         `json:"name"`
						Arguments map[string]any `json:"arguments"`
					} `json:"params"`
				}
				if err := json.Unmarshal(m, &lax); err != nil {
					t.Fatalf("a lax reader cannot read what was forwarded: %s: %v", m, err)
				}
				if err := jsonv2.Unmarshal(m, &strict, jsonv2.RejectUnknownMembers(false)); err != nil {
					t.Fatalf("a strict reader cannot read what was forwarded: %s: %v", m, err)
				}
				if !reflect.DeepEqual(lax, strict) {
					t.Fatalf("readers disagree on what was forwarded:\nlax    %+v\nstrict %+v\nin %s", lax, strict, m)
				}
				if lax.Method != "tools/call" {
					continue
				}
				calls++
				found := false
				for _, a := range allowed {
					if a["action"] == `Action::"`+lax.Params.Name+`"` {
						found = true
					}
				}
				if !found {
					t.Fatalf("the server ran %s with no allow decision for it; allowed: %v", m, allowed)
				}
			}
		}
		if calls != len(allowed) {
			t.Fatalf("%d calls reached the server, %d were allowed", calls, len(allowed))
		}
	})
}
