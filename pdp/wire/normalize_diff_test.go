package wire

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/cedar-policy/cedar-go/types"
	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// normalizeSeeds are records the normaliser must read as the reference
// does: the bench mix's attributes, the inputs of issue 11, every form of
// escape cedar-go knows and their neighbours.
var normalizeSeeds = []string{
	// agentpdp bench's built-in mix and pdp's benchmark request.
	`{"args":{"query":"select * from t where id = 42","limit":52}}`,
	`{"owner":{"__entity":{"type":"User","id":"owner-0@example.com"}},"trust":"high"}`,
	`{"classification":"public","environment":"dev","writes":true,"owner_team":{"__entity":{"type":"Team","id":"finance"}},"shared":false}`,
	`{"trust":"standard","owner":"alice"}`,
	// Issue 11: duplicates, invalid UTF-8, nesting, the decimal range.
	`{"ticket":"nope","ticket":"INC-42"}`,
	`{"a":{"b":1,"b":2}}`,
	`{"a":[{"x":1,"x":2}]}`,
	"{\"env\":\"staging\xff\"}",
	"{\"env\xfe\":\"staging\"}",
	`{"env":"staging\udc00"}`,
	"{\"k\":\"\xed\xa0\x80\"}",
	`{"n":-922337203685477.5808}`, `{"n":922337203685477.5807}`, `{"n":-922337203685477.5809}`,
	`{"n":922337203685477.5808}`, `{"n":1.5}`, `{"n":1.00001}`, `{"n":9223372036854775807}`,
	`{"n":-9223372036854775808}`, `{"n":9223372036854775808}`, `{"n":1e3}`, `{"n":-0}`, `{"n":-0.0}`, `{"n":1.50000}`,
	`{"a":{"a":{"a":{"a":{"a":1}}}}}`,
	// __entity, as the fast path reads it, and every neighbour.
	`{"e":{"__entity":{"type":"User","id":"alice"}}}`,
	`{"e":{"__entity":{"id":"alice","type":"User"}}}`,
	`{"e":{"__entity":{"type":"Org::Team","id":""}}}`,
	`{"e":{"__entity":{ "type" : "User" , "id" : "a\"b\\c\n\u0000" }}}`,
	`{"e":{"__entity":{"type":"User","id":"<script>&amp;</script>"}}}`,
	"{\"e\":{\"__entity\":{\"type\":\"User\",\"id\":\"line\u2028sep\u2029para\"}}}",
	`{"e":{"__entity":{"type":"User","id":"\u2028\u003c\ud83d\ude00"}}}`,
	`{"e":{"__entity":{"type":"User","id":"alice","extra":1}}}`,
	`{"e":{"__entity":{"type":"User","id":"alice","extra":1.5}}}`,
	`{"e":{"__entity":{"type":"User","id":"alice","extra":null}}}`,
	`{"e":{"__entity":{"type":"User","id":"alice","id":"bob"}}}`,
	`{"e":{"__entity":{"\u0074ype":"User","id":"alice"}}}`,
	`{"e":{"__entity":{"type":"User"}}}`,
	`{"e":{"__entity":{"id":"alice"}}}`,
	`{"e":{"__entity":{}}}`,
	`{"e":{"__entity":{"type":"User","id":5}}}`,
	`{"e":{"__entity":{"type":5,"id":"a"}}}`,
	`{"e":{"__entity":{"type":"Us er","id":"a"}}}`,
	`{"e":{"__entity":{"type":"if","id":"a"}}}`,
	`{"e":{"__entity":{"type":"User::","id":"a"}}}`,
	`{"e":{"__entity":{"type":"","id":"a"}}}`,
	`{"e":{"__entity":{"type":"User","id":{"__entity":{"type":"A","id":"b"}}}}}`,
	`{"e":{"__entity":{"type":"User","id":"a","x":{"__entity":{"type":"A","id":"b"}}}}}`,
	`{"e":{"__entity":"User::\"alice\""}}`,
	`{"e":{"__entity":null}}`,
	`{"e":{"__entity":[1]}}`,
	`{"e":{"__entity":{"type":"User","id":"alice"},"b":1}}`,
	`{"e":{"b":1,"__entity":{"type":"User","id":"alice"}}}`,
	`{"e":{"__entity":{"type":"User","id":"alice"},"__entity":1}}`,
	`{"e":{"__entity":"x","c":null}}`,
	`{"e":{"__entity":null,"c":1}}`,
	`{"e":{"__entity":{"a":{"__entity":{"type":"T","id":"i"}}},"c":1}}`,
	`{"e":[{"__entity":{"type":"User","id":"alice"}},{"__entity":{"type":"User","id":"alice"}}]}`,
	`{"__entity":{"type":"User","id":"alice"}}`,
	`{"__entity":{"type":"User","id":"alice"},"x":1}`,
	`{"__extn":{"fn":"ip","arg":"10.0.0.1"}}`,
	// __extn: always cedar-go's.
	`{"e":{"__extn":{"fn":"ip","arg":"10.0.0.1"}}}`,
	`{"e":{"__extn":{"fn":"decimal","arg":"1.5"}}}`,
	`{"e":{"__extn":{"fn":"decimal","arg":"x"}}}`,
	`{"e":{"__extn":{"fn":"datetime","arg":"2024-01-01"}}}`,
	`{"e":{"__extn":{"fn":"duration","arg":"1h"}}}`,
	`{"e":{"__extn":{"fn":"nope","arg":"1"}}}`,
	`{"e":{"__extn":{"fn":"ip"}}}`,
	`{"e":{"__extn":{"fn":"ip","arg":"10.0.0.1"},"x":[1,null,2.5]}}`,
	// Tokens the check refuses, in every place a string is stored.
	`{"eyJtoken":1}`, `{"a":"eyJtoken"}`, `{"e":{"__entity":{"type":"User","id":"eyJtoken"}}}`,
	`{"e":{"__entity":{"type":"User","id":"eyJtoken","x":1}}}`, `{"e":{"__entity":{"eyJ":1},"c":1}}`,
	`{"e":{"__extn":{"fn":"ip","arg":"eyJ"}}}`,
	// Arrays, nulls, literals, whitespace, trailing data, non-objects.
	`{"a":[1,null,"x",[],[null],{"b":null},true,false]}`, `{"a":null,"b":[null,null]}`,
	` { "a" : [ 1 , 2 ] } `, `{}`, `null`, ``, `[1]`, `"s"`, `{"a":1} {}`, `{"a":1}x`, `{"a":`, `{"a":1,}`,
	`{"a":[1,1,"1",1.0,1.00]}`, `{"a":[{"x":1},{"x":1}]}`,
}

// tokenCheck stands in for mask.Token: it refuses strings holding "eyJ".
func tokenCheck(s string) error {
	if strings.Contains(s, "eyJ") {
		return errors.New("a raw token is never logged")
	}
	return nil
}

// sameNormalize normalises raw with NormalizeRecord and with the reference
// and fails unless both accept or refuse, with the same error, value and
// canonical bytes.
func sameNormalize(t testing.TB, raw []byte) {
	t.Helper()
	rec, out, err := NormalizeRecord(raw, "/context", tokenCheck)
	wantRec, wantOut, wantErr := refNormalizeRecord(raw, "/context", tokenCheck)
	sameNormalizeMap(t, raw, rec, out, err)
	sameNormalizeMemo(t, raw, rec, out, err)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("%q: got error %v, the reference %v", raw, err, wantErr)
	}
	if err != nil {
		var re, wantRE *RequestError
		if !errors.As(err, &re) || !errors.As(wantErr, &wantRE) {
			t.Fatalf("%q: got error %v, the reference %v", raw, err, wantErr)
		}
		if re.Field == wantRE.Field && err.Error() == wantErr.Error() {
			return
		}
		// Malformed JSON or invalid UTF-8 inside an escape's value: the
		// reference's pointer depends on where its streaming decoder last
		// refilled its buffer (the same input names /x/__entity// on a
		// fresh decoder, /x/__entity/0/a on a used one). NormalizeRecord
		// reads the input whole, and must name what the library names
		// reading the same bytes whole.
		var v jsontext.Value
		libErr := readError(jsonv2.Unmarshal(bytes.TrimSpace(raw), &v, readOptions))
		var libRE *RequestError
		if !errors.As(libErr, &libRE) || re.Err.Error() != wantRE.Err.Error() || libRE.Err.Error() != wantRE.Err.Error() ||
			!strings.HasPrefix(re.Err.Error(), "malformed JSON") && !strings.HasPrefix(re.Err.Error(), "invalid UTF-8") ||
			re.Field != "/context"+libRE.Field {
			t.Fatalf("%q: got error %v, the reference %v, the library reading it whole %v", raw, err, wantErr, libErr)
		}
		return
	}
	if !bytes.Equal(out, wantOut) {
		t.Fatalf("%q: canonical JSON %s, the reference %s", raw, out, wantOut)
	}
	if !rec.Equal(wantRec) || !reflect.DeepEqual(rec, wantRec) {
		t.Fatalf("%q: record %v, the reference %v", raw, rec, wantRec)
	}
}

// sameNormalizeMap fails unless NormalizeRecordMap reads raw as
// NormalizeRecord did (rec, out, err): the same error, the same bytes, and
// a map whose record is rec, which the caller owns.
func sameNormalizeMap(t testing.TB, raw []byte, rec types.Record, out []byte, err error) {
	t.Helper()
	m, mout, merr := NormalizeRecordMap(raw, "/context", tokenCheck, 2)
	if (err == nil) != (merr == nil) || err != nil && (err.Error() != merr.Error() || !reflect.DeepEqual(err, merr)) {
		t.Fatalf("%q: NormalizeRecordMap's error %v, NormalizeRecord's %v", raw, merr, err)
	}
	if err != nil {
		return
	}
	if !bytes.Equal(out, mout) {
		t.Fatalf("%q: NormalizeRecordMap's canonical JSON %s, NormalizeRecord's %s", raw, mout, out)
	}
	if m == nil {
		if !reflect.DeepEqual(rec, types.Record{}) {
			t.Fatalf("%q: NormalizeRecordMap's map is nil, NormalizeRecord's record %v", raw, rec)
		}
		return
	}
	if got := types.NewRecord(m); !got.Equal(rec) || !reflect.DeepEqual(got, rec) {
		t.Fatalf("%q: NormalizeRecordMap's record %v, NormalizeRecord's %v", raw, got, rec)
	}
	// The map is the caller's: what it adds is in no later reading.
	m["__owned"] = types.True
	if again, _, _ := NormalizeRecordMap(raw, "/context", tokenCheck, 0); len(again) != len(m)-1 {
		t.Fatalf("%q: a second reading has %d members, want %d", raw, len(again), len(m)-1)
	}
	if again, _, _ := NormalizeRecord(raw, "/context", tokenCheck); !again.Equal(rec) {
		t.Fatalf("%q: a later NormalizeRecord gave %v, want %v", raw, again, rec)
	}
}

// testMemo is shared by every reading of the tests and the fuzz target:
// its slots fill with earlier inputs, which a later one may find or
// replace.
var testMemo = NewRecordMemo(tokenCheck)

// sameNormalizeMemo fails unless RecordMemo.Normalize reads raw as
// NormalizeRecord did (rec, out, err), when it reads raw first and when it
// has it already, and unless the bytes it gives are the caller's own.
func sameNormalizeMemo(t testing.TB, raw []byte, rec types.Record, out []byte, err error) {
	t.Helper()
	for range 2 {
		mrec, mout, merr := testMemo.Normalize(raw, "/context")
		if (err == nil) != (merr == nil) || err != nil && (err.Error() != merr.Error() || !reflect.DeepEqual(err, merr)) {
			t.Fatalf("%q: the memo's error %v, NormalizeRecord's %v", raw, merr, err)
		}
		if err != nil {
			continue
		}
		if !bytes.Equal(out, mout) {
			t.Fatalf("%q: the memo's canonical JSON %s, NormalizeRecord's %s", raw, mout, out)
		}
		if !mrec.Equal(rec) || !reflect.DeepEqual(mrec, rec) {
			t.Fatalf("%q: the memo's record %v, NormalizeRecord's %v", raw, mrec, rec)
		}
		for i := range mout {
			mout[i] = 'x' // the caller's own: the next reading must not see it
		}
	}
}

// The memo gives what NormalizeRecord gives whatever it holds: readings
// of other bytes in the same slot, one reading after another is refused,
// a refusal named with its own field each time.
func TestRecordMemo_SameAsNormalizeRecord(t *testing.T) {
	m := NewRecordMemo(tokenCheck)
	for round := range 3 {
		for _, s := range normalizeSeeds {
			rec, out, err := NormalizeRecord([]byte(s), "/entities/1/attrs", tokenCheck)
			mrec, mout, merr := m.Normalize([]byte(s), "/entities/1/attrs")
			if (err == nil) != (merr == nil) || err != nil && !reflect.DeepEqual(err, merr) {
				t.Fatalf("round %d %q: the memo's error %v, NormalizeRecord's %v", round, s, merr, err)
			}
			if err == nil && (!bytes.Equal(out, mout) || !reflect.DeepEqual(rec, mrec)) {
				t.Fatalf("round %d %q: the memo gave %s %v, NormalizeRecord %s %v", round, s, mout, mrec, out, rec)
			}
			if err != nil {
				// The same bytes read for another entity name it.
				_, _, merr := m.Normalize([]byte(s), "/entities/3/tags")
				var re *RequestError
				if !errors.As(merr, &re) || !strings.HasPrefix(re.Field, "/entities/3/tags") {
					t.Fatalf("%q: refused as %v, want under /entities/3/tags", s, merr)
				}
			}
		}
	}
	// Every slot taken by other bytes: a reading is still right.
	small := NewRecordMemo(tokenCheck)
	for i := range 3 * memoSlots {
		s := fmt.Sprintf(`{"k":%d,"s":"v%d"}`, i, i%7)
		want, wantOut, _ := NormalizeRecord([]byte(s), "/x", tokenCheck)
		got, gotOut, err := small.Normalize([]byte(s), "/x")
		if err != nil || !reflect.DeepEqual(got, want) || !bytes.Equal(gotOut, wantOut) {
			t.Fatalf("%s: %v %s %v, want %v %s", s, got, gotOut, err, want, wantOut)
		}
	}
}

func TestNormalize_MatchesLibrary(t *testing.T) {
	for _, s := range normalizeSeeds {
		sameNormalize(t, []byte(s))
	}
}

// The fast path reads the common escape itself; cedar-go is asked only
// for what it does not recognise.
func TestNormalize_EntityEscapeFastPath(t *testing.T) {
	n := newNormalizer()
	for _, s := range []string{`{"type":"User","id":"alice"}`, `{ "id" : "a\"b" , "type" : "Org::Team" }`} {
		if _, ok := n.entityEscape([]byte(s)); !ok {
			t.Errorf("%s: not read by the fast path", s)
		}
	}
	for _, s := range []string{`{"type":"User","id":"a","x":1}`, `{"type":"Us er","id":"a"}`, `{"typ\u0065":"User","id":"a"}`, `{"type":"User"}`, `{"type":"User","id":1}`} {
		if _, ok := n.entityEscape([]byte(s)); ok {
			t.Errorf("%s: read by the fast path, not cedar-go", s)
		}
	}
}

func FuzzNormalizeMatchesLibrary(f *testing.F) {
	for _, s := range normalizeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		sameNormalize(t, raw)
	})
}

// TestNormalize_EscapesCedarGoCannotWrite: an escape cedar-go reads as a
// record with a reserved key is refused at its pointer with the forms an
// escape takes, not with a message about Go types.
func TestNormalize_EscapesCedarGoCannotWrite(t *testing.T) {
	for _, in := range []string{
		`{"x":{"__entity":{"Type":"User","id":"a"}}}`,
		`{"x":{"__entity":{"type":"User"}}}`,
		`{"x":{"__extn":{"fn":"ip"}}}`,
		`{"x":[1,{"__entity":{"TYPE":"User","ID":"a"}}]}`,
	} {
		_, _, err := NormalizeRecord([]byte(in), "/context", func(string) error { return nil })
		var re *RequestError
		if !errors.As(err, &re) || !strings.HasPrefix(re.Field, "/context/x") ||
			!strings.Contains(err.Error(), `want {"__entity": {"type": "T", "id": "I"}}`) || strings.Contains(err.Error(), "types.") {
			t.Errorf("%s: %v", in, err)
		}
	}
}
