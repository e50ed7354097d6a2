package policy_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// Parse errors a person can act on (issue 17): what was expected, what was
// found, where the construct being closed began, and the source line with a
// caret, which stays out of the problem's JSON.
func TestLoad_ParseErrorsSayWhatToDo(t *testing.T) {
	tests := []struct {
		src, where, says, source string
	}{
		{ // the issue's: a missing } at the end of the file
			"@id(\"a\")\npermit (principal, action, resource) when {\n  context.a == 1\n",
			"a.cedar:3:17:", `expected "}" to close the "{" at 2:43, found the end of the file (in the policy that begins at 1:1)`,
			"    2 | permit (principal, action, resource) when {\n      |                                           ^ \"{\" opened here\n    3 |   context.a == 1\n      |                 ^ here"},
		{"permit (principal action, resource);", "a.cedar:1:19:", `expected "," or the ")" that closes the "(" at 1:8, found "action"`, "^ here"},
		{"permit (principal, action, resource) when { context.a == \"x };", "a.cedar:1:58:", `a string that is not closed: add its closing "`, "^ the string begins here"},
		{"permit (principal, action, resource) when { context.a == };", "a.cedar:1:59:", `expected a value or an expression, found ";"`, "^ here"},
		{"permitt (principal, action, resource);", "a.cedar:1:1:", `expected "permit" or "forbid" to begin a policy, found a name`, "    1 | permitt"},
		{"permit (principal, action, resource)", "a.cedar:1:37:", `expected ";" to end the policy, found the end of the file`, "^ here"},
		{"permit (principal, action, resource) when { [1, 2 };", "a.cedar:1:51:", `expected "," or the "]" that closes the "[" at 1:45, found "}"`, "^ here"},
	}
	for _, tt := range tests {
		le := loadErr(t, map[string]string{"a.cedar": tt.src})
		p := le.Problems[0]
		if !strings.HasSuffix(p.String(), tt.where+" "+tt.says) && !strings.Contains(p.String(), tt.where+" "+tt.says) {
			t.Errorf("%q:\n got %s\nwant %s %s", tt.src, p.String(), tt.where, tt.says)
		}
		if !strings.Contains(p.Source, tt.source) {
			t.Errorf("%q: source\n%s\nwant it to contain\n%s", tt.src, p.Source, tt.source)
		}
		for _, noise := range []string{"exact got", "want }", "parse error", "not shown"} {
			if strings.Contains(p.Message, noise) {
				t.Errorf("%q: the message keeps cedar-go's wording %q: %s", tt.src, noise, p.Message)
			}
		}
		b, _ := json.Marshal(p)
		if strings.Contains(string(b), "context.a") || strings.Contains(string(b), "permitt") || strings.Contains(string(b), "| ") {
			t.Errorf("%q: the file's text reaches the problem's JSON: %s", tt.src, b)
		}
	}
}
