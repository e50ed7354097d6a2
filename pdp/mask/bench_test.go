package mask_test

import (
	"testing"

	"github.com/agentpdp/agentpdp/pdp/mask"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// ordinary are strings of the kind a request carries on every decision:
// ids, UUIDs, digests, paths, URLs, free text, SQL, base64 of text.
var ordinary = []struct{ name, s string }{
	{"id", "billing-bot"}, {"action", "invoke_tool"}, {"tool", "sql.query"}, {"short", "s-42"}, {"ticket", "INC-1234"},
	{"uuid", "123e4567-e89b-12d3-a456-426614174000"},
	{"sha256-hex", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
	{"sha256-base64", "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="},
	{"sql", "select id, amount from invoices where month = '2026-10' limit 100"},
	{"url", "https://docs.example.com/api/v2/invoices?month=2026-10&page=3"},
	{"path", "/var/lib/agentpdp/policies/agents.cedar"},
	{"sentence", "Summarise the open incidents for the platform team and draft a status update."},
	{"base64-text", "SGVsbG8sIHRoaXMgaXMgb3JkaW5hcnkgdGV4dCBpbiBiYXNlNjQu"},
	{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
}

// BenchmarkToken is the detector on ordinary strings, as it runs on every
// string of every request: each kind alone, and "mix" cycling through all
// (ns/op per string).
func BenchmarkToken(b *testing.B) {
	b.Run("mix", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if mask.Token(ordinary[i%len(ordinary)].s) != nil {
				b.Fatal("an ordinary string refused")
			}
		}
	})
	for _, o := range ordinary {
		b.Run(o.name, func(b *testing.B) {
			for b.Loop() {
				if mask.Token(o.s) != nil {
					b.Fatal("an ordinary string refused")
				}
			}
		})
	}
}

// BenchmarkCheckRequest is CheckRequest on a request with the usual
// fields set.
func BenchmarkCheckRequest(b *testing.B) {
	req := &wire.Request{
		Principal: wire.EntityRef{Type: "Agent", ID: "billing-bot"}, Action: wire.EntityRef{Type: "Action", ID: "invoke_tool"},
		Resource: wire.EntityRef{Type: "Tool", ID: "sql.query"}, SessionID: "123e4567-e89b-12d3-a456-426614174000",
		TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", ToolCallID: "call_9f86d081884c7d65", OnBehalfOf: "alice@example.com",
		Credential: &wire.Credential{ID: "jti-1", Issuer: "https://idp.example", Subject: "billing-bot", Scopes: []string{"invoices:read"}},
	}
	for b.Loop() {
		if err := mask.CheckRequest("", req); err != nil {
			b.Fatal(err)
		}
	}
}
