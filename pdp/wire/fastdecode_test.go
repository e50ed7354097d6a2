package wire

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// typicalRequest is what agent frameworks send: the shape decodeFast exists for.
const typicalRequest = `{"principal":{"type":"Agent","id":"agent-18"},"action":{"type":"Action","id":"invoke_tool"},"resource":{"type":"Tool","id":"tool-10"},
	"context":{"args":{"query":"select * from t where id = 745","limit":35}},
	"entities":[{"uid":{"type":"Agent","id":"agent-18"},"parents":[{"type":"Team","id":"finance"}],"attrs":{"owner":{"__entity":{"type":"User","id":"owner-4@example.com"}},"trust":"low"}},
	            {"uid":{"type":"Tool","id":"tool-10"},"parents":[],"attrs":{"classification":"confidential","writes":false,"score":-1.5e3}, "tags":{"a":"b"}}],
	"session_id":"s-18","task_id":"t","trace_id":"000000000000000066dfbc844c05a2be","parent_decision_id":"p","tool_call_id":"call_1",
	"on_behalf_of":"alice@example.com","prompt":"héllo","approval":"a"}`

// fastShapes are read by decodeFast; strictShapes are left to the strict decoder.
var fastShapes = []string{
	typicalRequest,
	`{"principal":{"id":"a","type":"A"},"action":{"type":"Action","id":"x"},"resource":{"type":"R","id":""}}`,
	` { "principal" : { "type" : "A" , "id" : "a" } , "action":{"type":"B","id":"b"},"resource":{"type":"C","id":"c"} , "entities" : [ ] } `,
	`{"context":{"n":-0.5e-3,"t":true,"f":false,"z":null,"s":"x"}}`,
}

// normalShapes are normalised by normalizeFast; strictNormalShapes are left
// to normalizeRecord.
var (
	normalShapes = []string{
		`{}`,
		`{"z":1,"a":{"y":[1,null,2.5,{"__entity":{"type":"User","id":"u"}}],"b":null},"m":"é","e":{"__entity":{"id":"x","type":"A::B"}}}`,
		`{"n":null,"l":[null,null],"s":[],"big":123456789012345678901234567890,"f":1e-3,"t":true,"x":false}`,
	}
	strictNormalShapes = []string{
		`{"a":1,"a":2}`,
		`{"x":{"__entity":{"type":"A","id":"x","z":null}}}`,
		`{"x":{"__entity":{"type":"A","id":"x"},"y":1}}`,
		`{"x":{"__extn":{"fn":"ip","arg":"10.0.0.1"}}}`,
		`{"x":{"__entity":{"type":"not a type","id":"x"}}}`,
		`{"t":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2lnbmF0dXJl"}`,
		`{"s":"a\"b"}`,
		`[1]`,
		`{"__entity":{"type":"A","id":"x"}}`,
	}
)

var strictShapes = []string{
	`{"principal":{"type":"A","id":"a"},"principal":{"type":"A","id":"b"}}`,
	`{"Principal":{"type":"A","id":"a"}}`,
	`{"principal":{"type":"A","id":"a","x":1}}`,
	`{"principal":{"type":"A::","id":"a"}}`,
	`{"principal":"A::\"a\""}`,
	`{"session_id":"a\"b"}`,
	`{"session_id":null}`,
	`{"context":null}`,
	`{"context":{"a":[1,2,{"b":01}]}}`,
	`{"context":{"a":1}} x`,
	`{"credential":{"id":"c"}}`,
	`{"entities":[{"uid":{"type":"A","id":"a"},"unknown":1}]}`,
	"{\"session_id\":\"\xff\"}",
}

// TestDecodeFast_TakesTheCommonShape: the shape agents send is read by the
// fast path, and the shapes it leaves to the strict decoder are left to it.
func TestDecodeFast_TakesTheCommonShape(t *testing.T) {
	for _, s := range fastShapes {
		if _, ok := decodeFast([]byte(s)); !ok {
			t.Errorf("%s fell back to the strict decoder", s)
		}
		checkSameAsStrict(t, []byte(s))
	}
	for _, s := range normalShapes {
		if _, _, ok := normalizeFast([]byte(s), tokenLike); !ok {
			t.Errorf("normalizeFast left %s to normalizeRecord", s)
		}
		checkSameAsStrict(t, []byte(s))
	}
	for _, s := range strictNormalShapes {
		if _, _, ok := normalizeFast([]byte(s), tokenLike); ok {
			t.Errorf("normalizeFast accepted %s, which it must leave to normalizeRecord", s)
		}
	}
	for _, s := range strictShapes {
		if _, ok := decodeFast([]byte(s)); ok {
			t.Errorf("decodeFast accepted %s, which it must leave to the strict decoder", s)
		}
	}
}

// FuzzDecodeFast: whatever decodeFast accepts, the strict decoder accepts
// and decodes to the same Request; whatever normalizeFast accepts,
// NormalizeRecord normalises to the same record and JSON.
func FuzzDecodeFast(f *testing.F) {
	for _, s := range slices.Concat(fastShapes, strictShapes, normalShapes, strictNormalShapes) {
		f.Add([]byte(s))
	}
	f.Fuzz(checkSameAsStrict)
}

// checkSameAsStrict holds decodeFast and normalizeFast to what the
// decoders they stand in for make of b.
func checkSameAsStrict(t *testing.T, b []byte) {
	if rec, canonical, ok := normalizeFast(b, tokenLike); ok {
		want, wantJSON, err := normalizeRecordStrict(b, "x", tokenLike)
		if err != nil {
			t.Fatalf("normalizeFast accepted %q, normalizeRecord refused it: %v", b, err)
		}
		if !rec.Equal(want) || !bytes.Equal(canonical, wantJSON) {
			t.Fatalf("%q:\nnormalizeFast   %v %s\nnormalizeRecord %v %s", b, rec, canonical, want, wantJSON)
		}
	}
	checkRequestSameAsStrict(t, b)
}

func checkRequestSameAsStrict(t *testing.T, b []byte) {
	fast, ok := decodeFast(b)
	if !ok {
		return
	}
	var strict Request
	if err := DecodeStrict(b, (*strictRequest)(&strict)); err != nil {
		t.Fatalf("decodeFast accepted %q, the strict decoder refused it: %v", b, err)
	}
	if !reflect.DeepEqual(*fast, strict) {
		t.Fatalf("%q:\nfast   %+v\nstrict %+v", b, *fast, strict)
	}
}

// tokenLike stands in for mask.Token (which imports this package): the
// strings a token check refuses, a JWT's or a bearer token's start.
func tokenLike(s string) error {
	if strings.HasPrefix(s, "eyJ") || strings.HasPrefix(strings.ToLower(s), "bearer ") {
		return errors.New("raw token")
	}
	return nil
}
