package plural_test

import (
	"testing"

	"github.com/agentpdp/agentpdp/internal/plural"
)

func TestCount(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{{0, "0 policies"}, {1, "1 policy"}, {2, "2 policies"}, {-1, "-1 policies"}} {
		if got := plural.Count(tc.n, "policy", "policies"); got != tc.want {
			t.Errorf("Count(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
	if got := plural.Count(uint8(1), "row", "rows") + " " + plural.Word(1, "is", "are"); got != "1 row is" {
		t.Errorf("got %q", got)
	}
}
