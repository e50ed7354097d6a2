package mask_test

import (
	"encoding/json"
	"errors"
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

// TestCheckRequestNamesTheField: a token in any field CheckRequest reads is
// refused naming that field, the first in the request's order, with the
// batch prefix joined in front.
func TestCheckRequestNamesTheField(t *testing.T) {
	jwt := "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib3QifQ.c2lnbmF0dXJl"
	base := func() *wire.Request {
		return &wire.Request{
			Principal: wire.EntityRef{Type: "Agent", ID: "a"}, Action: wire.EntityRef{Type: "Action", ID: "go"},
			Resource:   wire.EntityRef{Type: "Tool", ID: "t"},
			Credential: &wire.Credential{ID: "c", Issuer: "i", Subject: "s", Scopes: []string{"read", "write"}},
			Entities: []wire.Entity{
				{UID: wire.EntityRef{Type: "Agent", ID: "a"}},
				{UID: wire.EntityRef{Type: "Tool", ID: "t"}, Parents: []wire.EntityRef{{Type: "Team", ID: "x"}, {Type: "Team", ID: "y"}}},
			},
		}
	}
	cases := []struct {
		field string
		set   func(r *wire.Request)
	}{
		{"/principal/id", func(r *wire.Request) { r.Principal.ID = jwt }},
		{"/resource/type", func(r *wire.Request) { r.Resource.Type = jwt }},
		{"/approval", func(r *wire.Request) { r.Approval = jwt }},
		{"/credential/subject", func(r *wire.Request) { r.Credential.Subject = jwt }},
		{"/credential/scopes/1", func(r *wire.Request) { r.Credential.Scopes[1] = jwt }},
		{"/entities/0/uid/type", func(r *wire.Request) { r.Entities[0].UID.Type = jwt }},
		{"/entities/1/uid/id", func(r *wire.Request) { r.Entities[1].UID.ID = jwt }},
		{"/entities/1/parents/1/type", func(r *wire.Request) { r.Entities[1].Parents[1].Type = jwt }},
		{"/entities/1/parents/0/id", func(r *wire.Request) { r.Entities[1].Parents[0].ID = jwt; r.Entities[1].Parents[1].ID = jwt }},
		// The first in order wins: the principal before a scope.
		{"/principal/type", func(r *wire.Request) { r.Credential.Scopes[0] = jwt; r.Principal.Type = jwt }},
	}
	if err := mask.CheckRequest("", base()); err != nil {
		t.Fatalf("clean request refused: %v", err)
	}
	for _, c := range cases {
		for _, prefix := range []string{"", "/requests/3"} {
			r := base()
			c.set(r)
			err := mask.CheckRequest(prefix, r)
			var re *wire.RequestError
			if !errors.As(err, &re) || re.Field != wire.JoinField(prefix, c.field) || !errors.Is(err, mask.ErrRawToken) {
				t.Errorf("%s (prefix %q): got %v, want a refusal of %s", c.field, prefix, err, wire.JoinField(prefix, c.field))
			}
		}
	}
}

// TestRawTokens_UnicodeSpaceAfterBearer: a header pasted from a web page
// or a document carries a no-break space (U+00A0) or another Unicode space
// after "Bearer", or a vertical tab: still a bearer token. The regexp's \s
// is ASCII only.
func TestRawTokens_UnicodeSpaceAfterBearer(t *testing.T) {
	for _, s := range []string{"Bearer\u00a0opaque-token-value-123", "Authorization: Bearer\u2003abcdefghijklmnop1234",
		"bearer\u202fabcdefghijklmnopqrstu", "Bearer\vabcdefghijklmnopqrstu", "x Bearer\u3000abcdefghijklmnop1234"} {
		if err := mask.Token(s); !errors.Is(err, mask.ErrRawToken) {
			t.Errorf("%q accepted (%v)", s, err)
		}
	}
}
