package pdp

import (
	"testing"

	"github.com/cedar-policy/cedar-go/types"
)

// uidString is cedar-go's EntityUID.String for every id: every ASCII byte
// alone and inside others, grapheme extenders first and later, invalid
// UTF-8.
func TestUIDStringIsCedars(t *testing.T) {
	ids := []string{"", "agent-7", "owner-0@example.com", "a b", "é", "\u0301x", "x\u0301", "\xff", "日本", "tab\there", "q\"uote", "back\\slash", "it's"}
	for c := range 256 {
		ids = append(ids, string(rune(c)), "a"+string([]byte{byte(c)})+"b")
	}
	for _, typ := range []types.EntityType{"Agent", "ns::Tool"} {
		for _, id := range ids {
			uid := types.NewEntityUID(typ, types.String(id))
			if got, want := uidString(uid), uid.String(); got != want {
				t.Errorf("uidString(%q, %q) = %q, want %q", typ, id, got, want)
			}
		}
	}
}

func BenchmarkUIDString(b *testing.B) {
	uid := types.NewEntityUID("Agent", "owner-0@example.com")
	b.ReportAllocs()
	for b.Loop() {
		_ = uidString(uid)
	}
}
