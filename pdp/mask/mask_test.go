package mask_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/agentpdp/agentpdp/pdp/mask"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

const okRefs = `"principal":"Agent::\"a\"","action":"Action::\"go\"","resource":"Tool::\"t\""`

// check decodes a request and checks it for raw tokens, as the engine does
// before anything else.
func check(t *testing.T, body string) error {
	t.Helper()
	req, err := wire.DecodeRequest([]byte(body))
	if err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return mask.CheckRequest("", req)
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRawTokens(t *testing.T) {
	jwt := "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib3QifQ.c2lnbmF0dXJl"
	for _, tok := range []string{jwt, "Bearer " + jwt, "bearer\tabcdefghijklmnopqrstuvwxyz", "BEARER   opaque-token-value-123", "  " + jwt + "  "} {
		err := check(t, `{`+okRefs+`,"session_id":`+toJSON(t, tok)+`}`)
		if err == nil || !strings.Contains(err.Error(), "raw token") {
			t.Errorf("%q accepted", tok)
		}
	}
	for _, ok := range []string{"eyJ-not-a-jwt-at-all-really", "bearer-of-bad-news-and-more", "an ordinary session id, long enough"} {
		if err := check(t, `{`+okRefs+`,"session_id":`+toJSON(t, ok)+`}`); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
}

// TestRawTokens_EmbeddedAndNames: a token inside a longer string, or as a
// JSON object's name, is found too (both reached the log before).
func TestRawTokens_EmbeddedAndNames(t *testing.T) {
	jwt := "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib3QifQ.c2lnbmF0dXJl"
	for _, s := range []string{"token=" + jwt, "\u200b" + jwt, "?access_token=" + jwt + "&x", "Bearer:opaque", "Bearer a b", "x Authorization: Bearer abcdefghijklmnop1234"} {
		if err := mask.Token(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	if err := mask.CheckJSON("/detail", json.RawMessage(`{"`+jwt+`":1}`)); err == nil || !strings.Contains(err.Error(), "/detail/"+jwt) {
		t.Errorf("a token as a name: %v", err)
	}
}

// TestRedaction_EveryMaskedString: Apply's redaction replaces each string it
// masked (a leaf, every string of a masked subtree, a credential field),
// raw or escaped as %q or JSON quote it, with what the log holds instead;
// with Remove, with a marker.
func TestRedaction_EveryMaskedString(t *testing.T) {
	for _, action := range []mask.Action{mask.HMAC, mask.Remove} {
		m, err := mask.New([]string{"/context/args/password", "/context/nested", "/credential/subject"}, action, []byte("k"))
		if err != nil {
			t.Fatal(err)
		}
		req := &wire.Request{
			Context:    json.RawMessage(`{"args":{"password":"p\"w\\1"},"nested":{"a":["deep-secret"]},"keep":"visible"}`),
			Credential: &wire.Credential{ID: "jti", Subject: "alice-subject"},
		}
		_, red, err := m.Apply(req)
		if err != nil {
			t.Fatal(err)
		}
		msg := `error parsing IP address p"w\1; "p\"w\\1"; deep-secret; alice-subject; visible`
		got := red.Redact(msg)
		for _, leak := range []string{`p"w\1`, `p\"w\\1`, "deep-secret", "alice-subject"} {
			if strings.Contains(got, leak) {
				t.Errorf("%s: %q still quotes %q", action, got, leak)
			}
		}
		want := "hmac-sha256:"
		if action == mask.Remove {
			want = "[masked]"
		}
		if !strings.Contains(got, want) || !strings.Contains(got, "visible") {
			t.Errorf("%s: %q: want masks (%s) in place and unmasked text kept", action, got, want)
		}
	}
	var none *mask.Redaction
	if none.Redact("x") != "x" {
		t.Error("a nil redaction changes text")
	}
}
