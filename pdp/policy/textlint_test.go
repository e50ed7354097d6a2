package policy_test

import (
	"strings"
	"testing"

	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp/policy"
)

// Text that displays otherwise than Cedar reads it is warned about, as
// Cedar's validator does: bidirectional controls (Trojan Source) and
// strings mixing scripts (issue 18).
func TestLint_BidiAndMixedScripts(t *testing.T) {
	dir := t.TempDir()
	pdptest.WriteFiles(t, dir, map[string]string{
		// "і" is CYRILLIC SMALL LETTER BYELORUSSIAN-UKRAINIAN I.
		"spoof.cedar": "@id(\"spoof\")\nforbid (principal == Agent::\"b\u0456lling-bot\", action, resource);\n",
		// An RLO in a comment and an RLI in a string.
		"trojan.cedar": "@id(\"trojan\")\npermit (principal, action, resource)\n// \u202e } when { true \u202c\nwhen { context.note == \"x\u2067y\" };\n",
		// One writing system each: no warning.
		"fine.cedar": "@id(\"fine\")\npermit (principal == Agent::\"東京タワー-bot\", action, resource)\nwhen { context.city == \"Zürich\" && context.greek == \"αβγ-1\" && context.kr == \"서울-漢字\" };\n",
	})
	snap, err := policy.LoadDir(dir, policy.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range policy.Lint(snap) {
		got = append(got, p.String())
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{
		"spoof.cedar:2:29: warning: string \"b\u0456lling-bot\" mixes scripts (Latin and Cyrillic)",
		"trojan.cedar:3:4: warning: bidirectional control character U+202E in a comment",
		"trojan.cedar:3:20: warning: bidirectional control character U+202C in a comment",
		"trojan.cedar:4:26: warning: bidirectional control character U+2067 in a string",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no warning %q in:\n%s", want, all)
		}
	}
	if strings.Contains(all, "fine.cedar") || strings.Count(all, "mixes scripts") != 1 {
		t.Errorf("single-script text warned about:\n%s", all)
	}
}
