package wire_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/agentpdp/agentpdp/pdp/wire"
)

const okRefs = `"principal":"Agent::\"a\"","action":"Action::\"go\"","resource":"Tool::\"t\""`

func TestDecodeRequest_BadInputNamesTheField(t *testing.T) {
	tests := []struct {
		name, body, field, msg string
	}{
		{"Empty", ``, "", "empty"},
		{"Truncated", `{"principal":`, "/principal", "truncated"},
		{"NotJSON", `principal=a`, "", "malformed JSON"},
		{"Trailing", `{` + okRefs + `} {}`, "", "after top-level value"},
		{"MissingPrincipal", `{"action":"A::\"a\"","resource":"R::\"r\""}`, "/principal", "required"},
		{"MissingResource", `{"principal":"A::\"a\"","action":"A::\"a\""}`, "/resource", "required"},
		{"UnknownField", `{` + okRefs + `,"aproval":"x"}`, "/aproval", "unknown field"},
		{"BadRefString", `{"principal":"Agent::billing-bot","action":"A::\"a\"","resource":"R::\"r\""}`, "/principal", `Type::"id"`},
		{"BadRefNumber", `{"principal":5,"action":"A::\"a\"","resource":"R::\"r\""}`, "/principal", "want"},
		{"RefIDNotString", `{"principal":{"type":"Agent","id":5},"action":"A::\"a\"","resource":"R::\"r\""}`, "/principal/id", "string"},
		{"RefBadType", `{"principal":{"type":"Ag ent","id":"x"},"action":"A::\"a\"","resource":"R::\"r\""}`, "/principal/type", "entity type"},
		{"RefMissingID", `{"principal":{"type":"Agent"},"action":"A::\"a\"","resource":"R::\"r\""}`, "/principal", "want"},
		{"WrongTypeString", `{` + okRefs + `,"session_id":5}`, "/session_id", "string"},
		{"WrongTypeScopes", `{` + okRefs + `,"credential":{"scopes":"a"}}`, "/credential/scopes", "[]string"},
		{"BadTime", `{` + okRefs + `,"credential":{"expires_at":"tomorrow"}}`, "/credential/expires_at", "RFC 3339"},
		{"UnknownCredentialField", `{` + okRefs + `,"credential":{"token":"eyJ..."}}`, "/credential/token", "unknown field"},
		{"ContextNotObject", `{` + okRefs + `,"context":[1]}`, "/context", "object"},
		{"EntityParentBad", `{` + okRefs + `,"entities":[{"uid":"Agent::\"a\"","parents":["x"]}]}`, "/entities/0/parents/0", `Type::"id"`},
		{"EntityMissingUID", `{` + okRefs + `,"entities":[{"attrs":{}}]}`, "/entities/0/uid", "required"},
		{"EntityUnknownField", `{` + okRefs + `,"entities":[{"uid":"A::\"a\"","atrs":{}}]}`, "/entities/0/atrs", "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := wire.DecodeRequest([]byte(tt.body))
			var re *wire.RequestError
			if !errors.As(err, &re) {
				t.Fatalf("want a RequestError, got %v", err)
			}
			if re.Field != tt.field {
				t.Errorf("field: got %q, want %q (%v)", re.Field, tt.field, err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("message %q does not say %q", err, tt.msg)
			}
		})
	}
}

func TestDecodeBatch_NamesTheIndex(t *testing.T) {
	_, err := wire.DecodeBatch([]byte(`{"requests":[{` + okRefs + `},{` + okRefs + `,"context":{"a":{"__extn":{"fn":"decimal","arg":"x"}}}},{"principal":"bad"}]}`))
	var re *wire.RequestError
	if !errors.As(err, &re) || re.Field != "/requests/2/principal" {
		t.Errorf("got %v, want /requests/2/principal", err)
	}
	if _, err := wire.DecodeBatch([]byte(`{"requests":[]}`)); err == nil {
		t.Error("empty batch accepted")
	}
}

func TestEntityRef_BothForms(t *testing.T) {
	for _, s := range []string{`"Agent::\"billing-bot\""`, `{"type":"Agent","id":"billing-bot"}`, `{"__entity":{"type":"Agent","id":"billing-bot"}}`} {
		var r wire.EntityRef
		if err := json.Unmarshal([]byte(s), &r); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if r.String() != `Agent::"billing-bot"` {
			t.Errorf("%s: got %s", s, r)
		}
	}
	r, err := wire.ParseEntityRef(`Org::Agent::"a \"quoted\" id"`)
	if err != nil || r.Type != "Org::Agent" || r.ID != `a "quoted" id` {
		t.Errorf("namespaced, escaped: got %+v, %v", r, err)
	}
}
