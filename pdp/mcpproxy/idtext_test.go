package mcpproxy

import (
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

// TestIDText_NumbersAsTheyAreWritten: an id is logged as the number it is,
// as a JSON-RPC peer writes it back: 1234567, not 1e+06's shortest-float
// form "1.234567e+06" (strconv's %g), which a query for tool call 1234567
// never finds. Integers are written in full up to 1e21, as JavaScript
// writes them; an id beyond 2^53 is logged as the float a server holds.
func TestIDText_NumbersAsTheyAreWritten(t *testing.T) {
	for id, want := range map[string]string{
		`1234567`: `1234567`, `1000000`: `1000000`, `1e6`: `1000000`, `1234567.0`: `1234567`,
		`-42`: `-42`, `-0`: `0`, `1.5`: `1.5`, `1e20`: `100000000000000000000`,
		`9007199254740993`: `9007199254740992`, `1e21`: `1e+21`, `"7"`: `"7"`, `7`: `7`,
	} {
		key, err := idKey(jsontext.Value(id))
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if got := idText(key); got != want {
			t.Errorf("id %s logged as %s, want %s", id, got, want)
		}
	}
}
