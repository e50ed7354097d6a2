package pdp_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// TestRawTokens_NeverInAnyStoredString: a raw token is refused (400 naming
// where it was) in every string the row stores, names and ids included,
// and when it is embedded in a longer string or re-encoded; none of these
// bytes reach the database files. Each input here was logged verbatim.
func TestRawTokens_NeverInAnyStoredString(t *testing.T) {
	d := pdptest.Serve(t, map[string]string{"p.cedar": `permit (principal, action, resource);`})
	const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJlc2lnbmF0dXJl"
	// The same token with standard base64 and padding in its segments.
	const jwtStd = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IrLz8ifQ==.c2lnbmF0+dXJl/c2ln=="
	const refs = `"principal":"Agent::\"a\"","action":"Action::\"x\"","resource":"Tool::\"t\""`
	ref := func(p, a, r string) string {
		return `"principal":` + quote(t, p) + `,"action":` + quote(t, a) + `,"resource":` + quote(t, r)
	}
	for _, c := range []struct{ name, body, field string }{
		{"context key", `{` + refs + `,"context":{"` + jwt + `":1}}`, "/context/" + jwt},
		{"embedded token=", `{` + refs + `,"context":{"t":"token=` + jwt + `"}}`, "/context/t"},
		{"URL query", `{` + refs + `,"context":{"t":"https://x.example/cb?access_token=` + jwt + `&x=1"}}`, "/context/t"},
		{"JSON in a string", `{` + refs + `,"context":{"t":"{\"tok\":\"` + jwt + `\"}"}}`, "/context/t"},
		{"after a zero-width space", `{` + refs + `,"context":{"t":"\u200b` + jwt + `"}}`, "/context/t"},
		{"standard base64 with padding", `{` + refs + `,"context":{"t":"` + jwtStd + `"}}`, "/context/t"},
		{"Bearer:", `{` + refs + `,"context":{"t":"Bearer:abcdefghijklmnopqrstuvwxyz0123456789"}}`, "/context/t"},
		{"Bearer a b", `{` + refs + `,"context":{"t":"Bearer a b"}}`, "/context/t"},
		{"Authorization header in a string", `{` + refs + `,"context":{"t":"Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123"}}`, "/context/t"},
		{"action id", `{` + ref(`Agent::"a"`, `Action::"`+jwt+`"`, `Tool::"t"`) + `}`, "/action/id"},
		{"entity id", `{` + refs + `,"entities":[{"uid":{"type":"Foo","id":"` + jwt + `"},"attrs":{},"parents":[]}]}`, "/entities/0/uid/id"},
		{"parent id", `{` + refs + `,"entities":[{"uid":{"type":"Foo","id":"a"},"attrs":{},"parents":[{"type":"Foo","id":"` + jwt + `"}]}]}`, "/entities/0/parents/0/id"},
		{"attribute name", `{` + refs + `,"entities":[{"uid":{"type":"Foo","id":"a"},"attrs":{"` + jwt + `":"x"},"parents":[]}]}`, "/entities/0/attrs/" + jwt},
		{"__entity id", `{` + refs + `,"context":{"o":{"__entity":{"type":"User","id":"` + jwt + `"}}}}`, "/context/o"},
		{"session id, embedded", `{` + refs + `,"session_id":"s-` + jwt + `"}`, "/session_id"},
		{"credential scope, embedded", `{` + refs + `,"credential":{"scopes":["x ` + jwt + `"]}}`, "/credential/scopes/0"},
	} {
		req, err := wire.DecodeRequest([]byte(c.body))
		if err != nil {
			t.Fatalf("%s: decode: %v", c.name, err)
		}
		_, err = d.Agent.Authorize(t.Context(), req)
		if !client.IsStatus(err, http.StatusBadRequest) || !strings.Contains(err.Error(), c.field) || !strings.Contains(err.Error(), "raw token") {
			t.Errorf("%s: got %v, want 400 naming %s", c.name, err, c.field)
		}
	}
	// Ordinary strings that merely mention the words still pass.
	for _, ok := range []string{"the bearer of bad news", "eyJ is how base64 JSON starts", "a.b.c"} {
		req, _ := wire.DecodeRequest([]byte(`{` + refs + `,"context":{"t":` + quote(t, ok) + `}}`))
		if _, err := d.Agent.Authorize(t.Context(), req); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	d.Stop() // close the log so every byte is in the files
	for _, f := range []string{"d.db", "d.db-wal"} {
		b, _ := os.ReadFile(filepath.Join(d.Dir, f))
		for _, s := range []string{"eyJzdWIiOiJib2Ii", "abcdefghijklmnopqrstuvwxyz", "Bearer a b"} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds token bytes %q", f, s)
			}
		}
	}
}

func quote(t *testing.T, s string) string {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRawTokens_NotInApprovals: an approval's approver and comment are
// stored in its row; a raw token in either is a 400 naming the field, and
// the step_up stays open for an honest answer. Both were logged verbatim.
func TestRawTokens_NotInApprovals(t *testing.T) {
	d := pdptest.Serve(t, map[string]string{"p.cedar": `@step_up("ask") permit (principal, action, resource);`})
	const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJlc2lnbmF0dXJl"
	req, _ := wire.DecodeRequest([]byte(`{"principal":"Agent::\"a\"","action":"Action::\"x\"","resource":"Tool::\"t\""}`))
	dec, err := d.Agent.Authorize(t.Context(), req)
	if err != nil || dec.Decision != wire.StepUp {
		t.Fatalf("want step_up: %v %v", dec, err)
	}
	for _, c := range []struct{ approver, comment, field string }{
		{jwt, "", "/approver"},
		{"alice", "ok, token=" + jwt, "/comment"},
		{"Bearer abcdefghijklmnopqrstuvwxyz", "", "/approver"},
	} {
		_, err := d.Admin.Approve(t.Context(), dec.DecisionID, c.approver, true, c.comment)
		if !client.IsStatus(err, http.StatusBadRequest) || !strings.Contains(err.Error(), c.field) || !strings.Contains(err.Error(), "raw token") {
			t.Errorf("approver %q comment %q: got %v, want 400 naming %s", c.approver, c.comment, err, c.field)
		}
	}
	if _, err := d.Admin.Approve(t.Context(), dec.DecisionID, "alice", true, "checked"); err != nil {
		t.Fatalf("an honest approval after the refused ones: %v", err)
	}
	d.Stop()
	for _, f := range []string{"d.db", "d.db-wal"} {
		b, _ := os.ReadFile(filepath.Join(d.Dir, f))
		if bytes.Contains(b, []byte("eyJzdWIiOiJib2Ii")) || bytes.Contains(b, []byte("abcdefghijklmnopqrstuvwxyz")) {
			t.Errorf("%s holds token bytes", f)
		}
	}
}
