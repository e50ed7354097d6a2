package pdp

import "github.com/cedar-policy/cedar-go/types"

// uidString is uid.String() (Type::"id", the id escaped as Rust's
// escape_debug does), in one allocation for the usual id: cedar-go escapes
// rune by rune, a string per rune, and the engine writes several uids into
// every decision's row.
func uidString(uid types.EntityUID) string {
	id := string(uid.ID)
	for i := 0; i < len(id); i++ {
		// Printable ASCII is its own escape, but for the three that
		// escape_debug escapes; anything else goes to cedar-go.
		if c := id[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '\'' {
			return uid.String()
		}
	}
	return string(uid.Type) + "::\"" + id + "\""
}
