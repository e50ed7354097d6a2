package wire_test

import (
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/cedar-policy/cedar-go/types"

	"github.com/agentpdp/agentpdp/pdp/wire"
)

// wantRefused decodes body with read and wants a RequestError naming field
// and saying msg.
func wantRefused(t *testing.T, name string, err error, field, msg string) {
	t.Helper()
	var re *wire.RequestError
	if !errors.As(err, &re) {
		t.Errorf("%s: want a RequestError, got %v", name, err)
		return
	}
	if re.Field != field || !strings.Contains(re.Error(), msg) {
		t.Errorf("%s: got %q (field %q), want field %q saying %q", name, re.Error(), re.Field, field, msg)
	}
}

// Issue 11: request names matched case-insensitively, so a second
// "PRINCIPAL" decided the request as billing-bot.
func TestRead_NamesAreCaseSensitive(t *testing.T) {
	for _, tt := range []struct{ body, field string }{
		{`{"principal":"Agent::\"scraper\"","PRINCIPAL":"Agent::\"billing-bot\"","action":"Action::\"go\"","resource":"Tool::\"t\""}`, "/PRINCIPAL"},
		{`{"Principal":"Agent::\"billing-bot\"","action":"Action::\"go\"","resource":"Tool::\"t\""}`, "/Principal"},
		{`{` + okRefs + `,"Context":{"ticket":"INC-42"}}`, "/Context"},
		{`{` + okRefs + `,"entities":[{"UID":"Agent::\"a\""}]}`, "/entities/0/UID"},
		{`{` + okRefs + `,"credential":{"Expires_At":"2000-01-01T00:00:00Z"}}`, "/credential/Expires_At"},
		{`{"principal":{"Type":"Agent","id":"a"},"action":"Action::\"go\"","resource":"Tool::\"t\""}`, "/principal/Type"},
	} {
		_, err := wire.DecodeRequest([]byte(tt.body))
		wantRefused(t, tt.body, err, tt.field, "unknown field")
	}
	_, err := wire.Reader{}.DecodeOutcome([]byte(`{"status":"success","Status":"skipped"}`))
	wantRefused(t, "outcome", err, "/Status", "unknown field")
	_, err = wire.Reader{}.DecodeApproval([]byte(`{"approver":"a","approved":false,"Approved":true}`))
	wantRefused(t, "approval", err, "/Approved", "unknown field")
}

// Issue 11: a duplicate context key was allowed and its order flipped the
// decision. A name twice in any object, at any depth, is refused, naming
// the duplicate by its JSON pointer.
func TestRead_DuplicateNamesRefused(t *testing.T) {
	for _, tt := range []struct{ body, field string }{
		{`{` + okRefs + `,"context":{"ticket":"nope","ticket":"INC-42"}}`, "/context/ticket"},
		{`{` + okRefs + `,"context":{"ticket":"INC-42","ticket":"nope"}}`, "/context/ticket"},
		{`{` + okRefs + `,"context":{"args":{"path":"/tmp","path":"/etc/shadow"}}}`, "/context/args/path"},
		{`{` + okRefs + `,"context":{"a":[{"x":1,"x":2}]}}`, "/context/a/0/x"},
		{`{"principal":"Agent::\"scraper\"","principal":"Agent::\"billing-bot\"","action":"Action::\"go\"","resource":"Tool::\"t\""}`, "/principal"},
		{`{` + okRefs + `,"entities":[{"uid":"Agent::\"a\"","attrs":{"trust":"low","trust":"high"}}]}`, "/entities/0/attrs/trust"},
		{`{` + okRefs + `,"entities":[{"uid":"Agent::\"a\"","tags":{"k":"a","k":"b"}}]}`, "/entities/0/tags/k"},
		{`{"principal":{"type":"Agent","id":"a","id":"b"},"action":"Action::\"go\"","resource":"Tool::\"t\""}`, "/principal/id"},
		{`{` + okRefs + `,"session_id":"s","session_id":"t"}`, "/session_id"},
	} {
		_, err := wire.DecodeRequest([]byte(tt.body))
		wantRefused(t, tt.body, err, tt.field, "duplicate name")
	}
	_, err := wire.DecodeBatch([]byte(`{"requests":[{` + okRefs + `},{` + okRefs + `,"context":{"k":1,"k":2}}]}`))
	wantRefused(t, "batch", err, "/requests/1/context/k", "duplicate name")
	_, err = wire.Reader{}.DecodeOutcome([]byte(`{"status":"success","detail":{"rows":1,"rows":2}}`))
	wantRefused(t, "outcome", err, "/detail/rows", "duplicate name")
	_, err = wire.Reader{}.DecodeApproval([]byte(`{"approver":"a","approved":false,"approved":true}`))
	wantRefused(t, "approval", err, "/approved", "duplicate name")
	// The normaliser holds the same rule for what reaches it by another way
	// (entity providers, replay).
	_, _, err = wire.NormalizeRecord(json.RawMessage(`{"a":{"b":1,"b":2}}`), "/context", noToken)
	wantRefused(t, "normalize", err, "/context/a/b", "duplicate name")
}

// Issue 11: invalid UTF-8 was replaced by U+FFFD, so an approval for
// "…staging\xff" allowed "…staging\xfe". It is refused wherever it is.
func TestRead_InvalidUTF8Refused(t *testing.T) {
	for _, tt := range []struct{ body, field string }{
		{`{` + okRefs + `,"context":{"env":"staging` + "\xff" + `"}}`, "/context/env"},
		{`{` + okRefs + `,"context":{"env` + "\xfe" + `":"staging"}}`, "/context"},
		{`{"principal":"Agent::\"a` + "\xff" + `\"","action":"Action::\"go\"","resource":"Tool::\"t\""}`, "/principal"},
		{`{` + okRefs + `,"session_id":"s` + "\xc3" + `"}`, "/session_id"},
		{`{` + okRefs + `,"entities":[{"uid":"Agent::\"a\"","attrs":{"k":"` + "\xed\xa0\x80" + `"}}]}`, "/entities/0/attrs/k"},
	} {
		_, err := wire.DecodeRequest([]byte(tt.body))
		wantRefused(t, tt.body, err, tt.field, "UTF-8")
	}
	_, err := wire.Reader{}.DecodeApproval([]byte(`{"approver":"al` + "\xff" + `","approved":true}`))
	wantRefused(t, "approval", err, "/approver", "UTF-8")
	_, err = wire.Reader{}.DecodeOutcome([]byte(`{"status":"success","detail":"` + "\xff" + `"}`))
	wantRefused(t, "outcome", err, "/detail", "UTF-8")
	// Escaped, a lone surrogate is invalid too.
	_, err = wire.DecodeRequest([]byte(`{` + okRefs + `,"context":{"env":"staging\udc00"}}`))
	wantRefused(t, "lone surrogate", err, "/context/env", "")
}

func nest(depth int, leaf string) string {
	return strings.Repeat(`{"a":`, depth) + leaf + strings.Repeat(`}`, depth)
}

// Issue 11: a context nested 1,000 to 9,999 deep passed the decoder but
// not SQLite's JSON functions, and its group commit rolled back. One limit,
// enforced while decoding, counted from the request object (depth 1).
func TestRead_DepthLimit(t *testing.T) {
	for _, depth := range []int{1000, 9999, 100000} {
		_, err := wire.DecodeRequest([]byte(`{` + okRefs + `,"context":` + nest(depth, `1`) + `}`))
		wantRefused(t, "context", err, "/context"+strings.Repeat("/a", wire.DefaultMaxDepth-1), "nested deeper than 64")
	}
	// At the limit: the request object and 63 levels of context.
	if _, err := wire.DecodeRequest([]byte(`{` + okRefs + `,"context":` + nest(wire.DefaultMaxDepth-1, `1`) + `}`)); err != nil {
		t.Errorf("depth %d refused: %v", wire.DefaultMaxDepth, err)
	}
	if _, err := wire.DecodeRequest([]byte(`{` + okRefs + `,"context":` + nest(wire.DefaultMaxDepth, `1`) + `}`)); err == nil {
		t.Errorf("depth %d accepted", wire.DefaultMaxDepth+1)
	}
	// Arrays count as objects do; brackets inside strings do not count.
	deepArray := `{` + okRefs + `,"context":{"a":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}}`
	if _, err := wire.DecodeRequest([]byte(deepArray)); err == nil {
		t.Error("arrays 100 deep accepted")
	}
	inString := `{` + okRefs + `,"context":{"a":"` + strings.Repeat(`[{\"`, 200) + `"}}`
	if _, err := wire.DecodeRequest([]byte(inString)); err != nil {
		t.Errorf("brackets in a string counted: %v", err)
	}
	// A batch counts from each request, not from the body.
	body := `{"requests":[{` + okRefs + `,"context":` + nest(wire.DefaultMaxDepth-1, `1`) + `}]}`
	if _, err := wire.DecodeBatch([]byte(body)); err != nil {
		t.Errorf("batch request at the limit refused: %v", err)
	}
	// The limit is configurable (max_json_depth).
	r := wire.Reader{MaxDepth: 8}
	_, err := r.DecodeRequest([]byte(`{` + okRefs + `,"context":` + nest(8, `1`) + `}`))
	wantRefused(t, "max 8", err, "/context"+strings.Repeat("/a", 7), "nested deeper than 8")
	_, err = r.DecodeOutcome([]byte(`{"status":"error","detail":` + nest(8, `1`) + `}`))
	wantRefused(t, "outcome", err, "/detail"+strings.Repeat("/a", 7), "nested deeper than 8")
}

// Issue 11: -922337203685477.5808, the smallest Cedar decimal, became a
// string. Both ends of decimal's range are decimals; one past is a string.
func TestNormalize_DecimalRange(t *testing.T) {
	for _, tt := range []struct {
		num  string
		want types.Value
	}{
		{"-922337203685477.5808", mustDecimal(t, "-922337203685477.5808")},
		{"922337203685477.5807", mustDecimal(t, "922337203685477.5807")},
		{"-922337203685477.5809", types.String("-922337203685477.5809")},
		{"922337203685477.5808", types.String("922337203685477.5808")},
		{"1.5", mustDecimal(t, "1.5")},
		{"1.00001", types.String("1.00001")},
		{"9223372036854775807", types.Long(9223372036854775807)},
		{"-9223372036854775808", types.Long(-9223372036854775808)},
		{"9223372036854775808", types.String("9223372036854775808")},
	} {
		rec, _, err := wire.NormalizeRecord(json.RawMessage(`{"n":`+tt.num+`}`), "/context", noToken)
		if err != nil {
			t.Fatalf("%s: %v", tt.num, err)
		}
		got, _ := rec.Get("n")
		if !got.Equal(tt.want) {
			t.Errorf("%s: got %T %v, want %T %v", tt.num, got, got, tt.want, tt.want)
		}
	}
}

func mustDecimal(t *testing.T, s string) types.Decimal {
	t.Helper()
	d, err := types.ParseDecimal(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func noToken(string) error { return nil }

// A number's exponent costs nothing to read: 1e-999999 took about 115 ms
// and 400 KB (big.Rat built 10^999999 to find it is not a decimal), so a
// 1 MiB context of such numbers held a core for hours. Each value is what
// it was (a string, or the decimal 0 for a zero), and the allocation is
// bounded.
func TestNormalize_HugeExponentsAreCheap(t *testing.T) {
	for _, tt := range []struct {
		num  string
		want types.Value
	}{
		{"1e-999999", types.String("1e-999999")},
		{"1e999999", types.String("1e999999")},
		{"-9.5E+999999", types.String("-9.5E+999999")},
		{"1e-99999999999999999999", types.String("1e-99999999999999999999")},
		{"0e999999", types.Long(0)},
		{"-0.000e-999999", types.Long(0)},
		{"100000000000000000000e-20", types.Long(1)},
		{"0.00000000000000000000000000000000000000000000000001e50", types.Long(1)},
		{"15000000000000000000e-19", mustDecimal(t, "1.5")},
		{"12345e-4", mustDecimal(t, "1.2345")},
		{"12345e-5", types.String("12345e-5")},
		{"1.5e-3", mustDecimal(t, "0.0015")},
		{"1.5e-4", types.String("1.5e-4")},
		{"9.2233720368547758075e14", types.String("9.2233720368547758075e14")},
		{"92233720368547758070e-5", mustDecimal(t, "922337203685477.5807")},
		{"-9.2233720368547758085e14", types.String("-9.2233720368547758085e14")},
		{"-9.2233720368547758081e14", types.String("-9.2233720368547758081e14")},
		{"-922337203685477.5808e0", mustDecimal(t, "-922337203685477.5808")},
		{"1.5e14", types.Long(150000000000000)},
		{"1.00005e15", types.Long(1000050000000000)},
		{"1.0000000000000005e14", mustDecimal(t, "100000000000000.05")},
	} {
		raw := json.RawMessage(`{"n":` + tt.num + `}`)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		rec, _, err := wire.NormalizeRecord(raw, "/context", noToken)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatalf("%s: %v", tt.num, err)
		}
		got, _ := rec.Get("n")
		if !got.Equal(tt.want) {
			t.Errorf("%s: got %T %v, want %T %v", tt.num, got, got, tt.want, tt.want)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
			t.Errorf("%s: normalising allocated %d bytes, want under 64 KiB", tt.num, n)
		}
	}
}

// One JSON value is one Cedar value: 22, 22.0, 2.2e1 and 220e-1 are the
// same number (RFC 8259; JavaScript and every MCP server read them so), so
// they are the same Long, logged as 22. As a decimal, "port":22.0 slipped
// past `forbid … when { context.port == 22 }` (decimal("22.0") == 22 is
// false) while the tool it authorised opened port 22. -0 is 0.
func TestNormalize_IntegralNumbersAreLongs(t *testing.T) {
	for _, tt := range []struct {
		num  string
		want types.Value
		text string
	}{
		{"22", types.Long(22), "22"},
		{"22.0", types.Long(22), "22"},
		{"22.0000", types.Long(22), "22"},
		{"2.2e1", types.Long(22), "22"},
		{"2.2E+1", types.Long(22), "22"},
		{"220e-1", types.Long(22), "22"},
		{"-22.00", types.Long(-22), "-22"},
		{"-0", types.Long(0), "0"},
		{"-0.0", types.Long(0), "0"},
		{"0e999999", types.Long(0), "0"},
		{"1e18", types.Long(1000000000000000000), "1000000000000000000"},
		{"9223372036854775807.0", types.Long(9223372036854775807), "9223372036854775807"},
		{"-9.223372036854775808e18", types.Long(-9223372036854775808), "-9223372036854775808"},
		{"9223372036854775808.0", types.String("9223372036854775808.0"), `"9223372036854775808.0"`},
		{"1e19", types.String("1e19"), `"1e19"`},
		{"22.5", mustDecimal(t, "22.5"), `{"__extn":{"fn":"decimal","arg":"22.5"}}`},
		{"2.25e1", mustDecimal(t, "22.5"), `{"__extn":{"fn":"decimal","arg":"22.5"}}`},
	} {
		rec, out, err := wire.NormalizeRecord(json.RawMessage(`{"n":`+tt.num+`}`), "/context", noToken)
		if err != nil {
			t.Fatalf("%s: %v", tt.num, err)
		}
		got, _ := rec.Get("n")
		if !got.Equal(tt.want) {
			t.Errorf("%s: got %T %v, want %T %v", tt.num, got, got, tt.want, tt.want)
		}
		if want := `{"n":` + tt.text + `}`; string(out) != want {
			t.Errorf("%s: logged %s, want %s", tt.num, out, want)
		}
	}
}
