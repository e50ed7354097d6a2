package console

import (
	"regexp"
	"testing"
)

// A count on a page takes the word its number does: "1 checkpoint", "1 row
// after it" (the integrity page read "1 checkpoints, … 1 rows after it").
// No template writes a word for a count without plural.
func TestPages_CountsAgreeWithTheirNumber(t *testing.T) {
	for _, c := range []struct {
		n    any
		want string
	}{{1, "row"}, {int64(1), "row"}, {uint64(1), "row"}, {0, "rows"}, {int64(2), "rows"}} {
		if got := pluralWord(c.n, "row", "rows"); got != c.want {
			t.Errorf("plural %T %v: %q, want %q", c.n, c.n, got, c.want)
		}
	}
	bare := regexp.MustCompile(`\}\} (rows|checkpoints|decisions|policies|reloads|bytes|step-ups)\b`)
	entries, err := templateFS.ReadDir("templates")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := templateFS.ReadFile("templates/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range bare.FindAllString(string(b), -1) {
			t.Errorf("templates/%s: a count written without plural: %q", e.Name(), m)
		}
	}
}
