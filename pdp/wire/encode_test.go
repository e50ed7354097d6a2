package wire_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/agentpdp/agentpdp/pdp/wire"
)

// The fast encoder (encode.go) is held to the library: for every value,
// wire.MarshalRecord and wire.MarshalDecision write exactly the bytes of
// jsonv2.Marshal(v, writeOptions), and the encoder alone (without its
// fallback to the library) writes them for every shape it does not give
// up on.

// libraryBytes is the reference: what the library writes.
func libraryBytes(v any) ([]byte, error) { return jsonv2.Marshal(v, wire.WriteOptions) }

// hardString is a string every escaping rule applies to: ", \, the
// control characters with and without a short escape, what HTML and
// JavaScript escaping would touch (<, >, &, U+2028, U+2029; the library
// leaves them), a literal U+FFFD, and (unless clean) invalid UTF-8, which
// the library writes as U+FFFD, byte by byte.
func hardString(name string, clean bool) string {
	s := "S" + name + "\"\\/\b\f\n\r\t\x00\x01\x1f\x7f <>& é\u2028\u2029\ufffd𝄞"
	if !clean {
		s += "\xff\xc3(\xed\xa0\x80\xe2\x82"
	}
	return s
}

// hardRaw is embedded JSON in canonical form (the fast encoder writes it
// as it is) with every kind of value and the canonical escapes.
func hardRaw(name string) json.RawMessage {
	q, _ := jsontext.AppendQuote(nil, hardString(name, true))
	return json.RawMessage(`{"k":` + string(q) + `,"a":[1,-2.5e+3,0,-0,1E-7,true,false,null,{},[]],"o":{"k":{"é":""}},"<&>":"\u001f"}`)
}

var (
	timeType = reflect.TypeFor[time.Time]()
	rawType  = reflect.TypeFor[json.RawMessage]()
	refType  = reflect.TypeFor[wire.EntityRef]()
)

// fillAll sets every exported field under v to a value that is not zero
// (nor empty), with hard strings. clean keeps what the strict reader
// takes: valid UTF-8, entity types that are Cedar names.
func fillAll(t testing.TB, v reflect.Value, name string, clean bool) {
	switch v.Type() {
	case timeType:
		v.Set(reflect.ValueOf(time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)))
		return
	case rawType:
		v.SetBytes(hardRaw(name))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(hardString(name, clean))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(-7)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(7)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fillAll(t, v.Elem(), name, clean)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		fillAll(t, v.Index(0), name, clean)
		fillAll(t, v.Index(1), name+"1", clean)
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		for _, k := range []string{"z" + name, "a" + name, "m" + name, hardString(name, true)} {
			e := reflect.New(v.Type().Elem()).Elem()
			fillAll(t, e, name, clean)
			v.SetMapIndex(reflect.ValueOf(k).Convert(v.Type().Key()), e)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			if v.Type() == refType && f.Name == "Type" {
				v.Field(i).SetString("S" + name) // a Cedar entity type
				continue
			}
			fillAll(t, v.Field(i), f.Name, clean)
		}
	default:
		t.Fatalf("fill: %s of kind %s", name, v.Kind())
	}
}

// leaf is a field reachable from a type, by its Go path
// (DecisionRecord.Request.Credential.IssuedAt) and its field indexes.
type leaf struct {
	path  string
	index []int
}

// leaves lists every field under typ that holds a value (not a struct the
// walk goes into): what a new field in any of the types adds.
func leaves(typ reflect.Type, path string, index []int) []leaf {
	for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice && typ != rawType {
		typ = typ.Elem()
	}
	if typ.Kind() != reflect.Struct || typ == timeType {
		return []leaf{{path, index}}
	}
	var out []leaf
	for i := range typ.NumField() {
		if f := typ.Field(i); f.IsExported() {
			out = append(out, leaves(f.Type, path+"."+f.Name, append(index[:len(index):len(index)], i))...)
		}
	}
	return out
}

// setLeaf fills the one field at index under v, making the pointers and
// slices on its way (one element each).
func setLeaf(t testing.TB, v reflect.Value, index []int, name string) {
	for len(index) > 0 {
		switch {
		case v.Kind() == reflect.Pointer:
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		case v.Kind() == reflect.Slice:
			if v.Len() == 0 {
				v.Set(reflect.MakeSlice(v.Type(), 1, 1))
			}
			v = v.Index(0)
		default:
			v = v.Field(index[0])
			index = index[1:]
		}
	}
	fillAll(t, v, name, false)
}

// fast writes v with the fast encoder alone; false when it gave up.
func fast(v any) ([]byte, bool) {
	switch v := v.(type) {
	case *wire.DecisionRecord:
		return wire.AppendRecord(nil, v)
	case *wire.Decision:
		return wire.AppendDecision(nil, v)
	}
	panic("fast: not a record or a decision")
}

// marshal is the encoder with its fallback, as callers use it.
func marshal(v any) ([]byte, error) {
	switch v := v.(type) {
	case *wire.DecisionRecord:
		return wire.MarshalRecord(v)
	case *wire.Decision:
		return wire.MarshalDecision(v)
	}
	panic("marshal: not a record or a decision")
}

// sameAsLibrary checks that the fast encoder alone writes v as the
// library does.
func sameAsLibrary(t *testing.T, v any) []byte {
	t.Helper()
	want, err := libraryBytes(v)
	if err != nil {
		t.Fatalf("library: %v", err)
	}
	got, ok := fast(v)
	if !ok {
		t.Fatalf("the fast encoder gave up on a shape it must write\nlibrary: %s", want)
	}
	if string(got) != string(want) {
		t.Fatalf("fast encoder differs from the library\n   fast: %s\nlibrary: %s\n  first difference at byte %d", got, want, firstDiff(got, want))
	}
	if b, err := marshal(v); err != nil || string(b) != string(want) {
		t.Fatalf("Marshal: %v\n%s", err, b)
	}
	return got
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// Issue 11: a field added to the record must not be silently dropped.
// Each field of every type the record and the answer hold, set alone, is
// written by the fast encoder as the library writes it: a field the
// encoder does not write fails here, by its name.
func TestFastEncoder_EveryFieldAsLibrary(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[wire.DecisionRecord](), reflect.TypeFor[wire.Decision]()} {
		ls := leaves(typ, typ.Name(), nil)
		if len(ls) < 10 {
			t.Fatalf("%s: only %d fields found", typ, len(ls))
		}
		for _, l := range ls {
			t.Run(l.path, func(t *testing.T) {
				v := reflect.New(typ)
				setLeaf(t, v.Elem(), l.index, l.path[strings.LastIndexByte(l.path, '.')+1:])
				sameAsLibrary(t, v.Interface())
			})
		}
		t.Run(typ.Name()+"/zero", func(t *testing.T) { sameAsLibrary(t, reflect.New(typ).Interface()) })
		t.Run(typ.Name()+"/all", func(t *testing.T) {
			v := reflect.New(typ)
			fillAll(t, v.Elem(), typ.Name(), false)
			sameAsLibrary(t, v.Interface())
		})
	}
}

// What the fast encoder writes, the strict reader reads back as the
// record it was.
func TestFastEncoder_ReadsBack(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[wire.DecisionRecord](), reflect.TypeFor[wire.Decision]()} {
		in := reflect.New(typ)
		fillAll(t, in.Elem(), typ.Name(), true)
		b := sameAsLibrary(t, in.Interface())
		out := reflect.New(typ)
		if err := (wire.Reader{}).Unmarshal(b, out.Interface()); err != nil {
			t.Fatalf("%s: the strict reader refuses the fast encoder's bytes: %v\n%s", typ, err, b)
		}
		if !reflect.DeepEqual(in.Interface(), out.Interface()) {
			t.Errorf("%s does not read back:\nwrote %s\n  in %+v\n out %+v", typ, b, in.Elem(), out.Elem())
		}
	}
}

// The shapes on the edges of omitempty and omitzero: present but empty
// values, which the library drops or keeps by their JSON, not their Go
// value.
func TestFastEncoder_EmptyShapes(t *testing.T) {
	ref := wire.EntityRef{Type: "Agent", ID: "a"}
	req := func(f func(r *wire.Request)) *wire.DecisionRecord {
		r := &wire.Request{Principal: ref, Action: ref, Resource: ref}
		f(r)
		return &wire.DecisionRecord{Request: r}
	}
	for name, v := range map[string]any{
		"empty slices":         &wire.DecisionRecord{Reasons: []wire.Reason{}, Errors: []wire.EvalError{}, Masked: []string{}, Provided: []wire.Entity{}, LogOnly: []wire.Reason{}},
		"empty structs":        &wire.DecisionRecord{Approval: &wire.ApprovalUse{}, Shadow: &wire.ShadowResult{}, Peer: &wire.Peer{}, Evidence: &wire.Evidence{Identity: &wire.IdentityFacts{}, Entities: map[string]string{}}},
		"empty maps":           &wire.DecisionRecord{Reasons: []wire.Reason{{Annotations: map[string]string{}}, {Annotations: map[string]string{"": ""}}}},
		"empty credential":     req(func(r *wire.Request) { r.Credential = &wire.Credential{Scopes: []string{}} }),
		"credential of a time": req(func(r *wire.Request) { r.Credential = &wire.Credential{IssuedAt: &time.Time{}} }),
		"zone offset": req(func(r *wire.Request) {
			t := time.Date(1, 2, 3, 4, 5, 6, 0, time.FixedZone("x", -(23*3600+59*60)))
			r.Credential = &wire.Credential{ExpiresAt: &t}
		}),
		"empty raw object": req(func(r *wire.Request) { r.Context = json.RawMessage(`{}`) }),
		"raw null":         req(func(r *wire.Request) { r.Context = json.RawMessage(`null`) }),
		"raw empty string": req(func(r *wire.Request) {
			r.Entities = []wire.Entity{{Attrs: json.RawMessage(`""`), Tags: json.RawMessage(`[]`)}}
		}),
		"raw scalars": req(func(r *wire.Request) {
			r.Entities = []wire.Entity{{Attrs: json.RawMessage(`-0.5e+10`), Tags: json.RawMessage(`"x"`)}, {Attrs: json.RawMessage(`true`)}}
		}),
		"raw control escapes": req(func(r *wire.Request) { r.Context = json.RawMessage(`{"a":"\u0000\u001f\u0010\u000b\b\f\n\r\t\"\\"}`) }),
		"raw deep": req(func(r *wire.Request) {
			r.Context = json.RawMessage(strings.Repeat(`[`, 200) + strings.Repeat(`]`, 200))
		}),
		"raw same name, nested":      req(func(r *wire.Request) { r.Context = json.RawMessage(`{"a":{"a":1},"b":{"a":[{"a":2}]}}`) }),
		"raw many names in order":    req(func(r *wire.Request) { r.Context = json.RawMessage(manyNames(1000, true)) }),
		"raw escaped names":          req(func(r *wire.Request) { r.Context = json.RawMessage(`{"\u0000":1,"\"":2,"\n":3,"\u001f":{"\\":4}}`) }),
		"raw few names out of order": req(func(r *wire.Request) { r.Context = json.RawMessage(`{"b":1,"a":2,"c":{"z":1,"y":2}}`) }),
		"decision empty":             &wire.Decision{Reasons: []wire.Reason{}, Errors: []wire.EvalError{}},
		"decision negative seq":      &wire.Decision{Seq: -1, DecisionID: "x"},
		"eval error zero line":       &wire.Decision{Errors: []wire.EvalError{{Line: 0, Effect: ""}}},
		"reason builtin false":       &wire.Decision{Reasons: []wire.Reason{{Builtin: false, Line: -3}}},
		"negative and max ints":      &wire.DecisionRecord{EvalNanos: -1 << 63, Peer: &wire.Peer{PID: -1 << 31, UID: 1<<32 - 1, GID: 0}},
		"verdicts out of the enum":   &wire.DecisionRecord{Decision: "al\"low\xff", OnError: "\n"},
	} {
		t.Run(name, func(t *testing.T) { sameAsLibrary(t, v) })
	}
}

// The shapes the fast encoder leaves to the library, each for the reason
// encode.go gives: MarshalRecord's bytes (or its error) are still the
// library's.
func TestFastEncoder_FallsBackToLibrary(t *testing.T) {
	ref := wire.EntityRef{Type: "Agent", ID: "a"}
	rawCtx := func(s string) *wire.DecisionRecord {
		return &wire.DecisionRecord{Request: &wire.Request{Principal: ref, Action: ref, Resource: ref, Context: json.RawMessage(s)}}
	}
	at := func(t time.Time) *wire.DecisionRecord {
		return &wire.DecisionRecord{Request: &wire.Request{Credential: &wire.Credential{IssuedAt: &t}}}
	}
	for name, c := range map[string]struct {
		v       any
		refused bool // the library returns an error
	}{
		"nil record":                    {(*wire.DecisionRecord)(nil), false},
		"nil decision":                  {(*wire.Decision)(nil), false},
		"raw with space":                {rawCtx(`{ "a": 1 }`), false},
		"raw empty object with space":   {rawCtx(`{ }`), false},
		"raw leading space":             {rawCtx(` {"a":1}`), false},
		"raw escaped slash":             {rawCtx(`{"a":"\/"}`), false},
		"raw upper-case escape":         {rawCtx(`{"a":"\u001F"}`), false},
		"raw long escape":               {rawCtx(`{"a":"\u0041\n"}`), false},
		"raw escaped newline as \\u":    {rawCtx(`{"a":"\u000a"}`), false},
		"raw lone surrogate":            {rawCtx(`{"a":"\ud800"}`), false},
		"raw invalid UTF-8":             {rawCtx("{\"a\":\"\xff\"}"), false},
		"raw needlessly escaped name":   {rawCtx(`{"\u0061":1}`), false},
		"raw escaped names collide":     {rawCtx(`{"a":1,"\u0061":2}`), true},
		"raw escaped name twice":        {rawCtx(`{"\n":1,"a":2,"\n":3}`), true},
		"raw duplicate name":            {rawCtx(`{"a":1,"b":2,"a":3}`), true},
		"raw many names out of order":   {rawCtx(manyNames(100, false)), false},
		"raw many names, one twice":     {rawCtx(strings.TrimSuffix(manyNames(100, true), "}") + `,"k000":2}`), true},
		"raw a name twice after order":  {rawCtx(`{"b":1,"a":2,"b":3}`), true},
		"raw too deep for the encoder":  {rawCtx(strings.Repeat(`[`, 300) + strings.Repeat(`]`, 300)), false},
		"raw empty":                     {rawCtx(""), true},
		"raw invalid":                   {rawCtx(`{"a":01}`), true},
		"raw truncated":                 {rawCtx(`{"a":[1,2}`), true},
		"raw two values":                {rawCtx(`{}{}`), true},
		"raw control character":         {rawCtx("{\"a\":\"\n\"}"), true},
		"map key invalid UTF-8":         {&wire.Decision{Reasons: []wire.Reason{{Annotations: map[string]string{"\xff": "1"}}}}, false},
		"map keys become the same name": {&wire.Decision{Reasons: []wire.Reason{{Annotations: map[string]string{"\xff": "1", "\xfe": "2"}}}}, true},
		"year 10000":                    {at(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)), true},
		"year -1":                       {at(time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)), true},
		"zone offset of 24 hours":       {at(time.Date(2020, 1, 1, 0, 0, 0, 0, time.FixedZone("x", 24*3600))), true},
	} {
		t.Run(name, func(t *testing.T) {
			if _, ok := fast(c.v); ok {
				t.Fatal("the fast encoder wrote a shape it must leave to the library")
			}
			want, werr := libraryBytes(c.v)
			got, gerr := marshal(c.v)
			if (werr != nil) != c.refused {
				t.Fatalf("the library's error: %v, want refused %v", werr, c.refused)
			}
			if (gerr != nil) != (werr != nil) || string(got) != string(want) {
				t.Fatalf("Marshal: %v %s\nlibrary: %v %s", gerr, got, werr, want)
			}
		})
	}
}

// manyNames is an object of n members, its names in increasing order or
// not.
func manyNames(n int, ordered bool) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		if !ordered {
			i = (i * 7919) % n
		}
		fmt.Fprintf(&b, `"k%03d":1`, i)
	}
	b.WriteByte('}')
	return b.String()
}

// What the normaliser writes (the logged context and entity attributes) is
// canonical: the fast encoder writes it without the library.
func TestFastEncoder_TakesNormalizedJSON(t *testing.T) {
	ref := wire.EntityRef{Type: "Agent", ID: "a"}
	for _, in := range []string{
		`{}`, `null`, ` { "b" : [ 1 , 2.50 , -0.0001, 1e3, 12345678901234567890, null ] , "a" : "\u0061\/\u00e9\ud83d\ude00<&>\u2028" } `,
		`{"k":{"__entity":{"type":"User","id":"x\"y"}},"d":{"__extn":{"fn":"decimal","arg":"1.5"}},"s":"\t\n\u0001\u007f","n":{"z":{"y":{"x":[[],{}]}}}}`,
		manyNames(300, false), `{"é":1,"e":2,"E":3,"\u0000":4,"":5}`,
	} {
		_, norm, err := wire.NormalizeRecord(json.RawMessage(in), "/context", func(string) error { return nil })
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		r := &wire.DecisionRecord{Request: &wire.Request{Principal: ref, Action: ref, Resource: ref, Context: norm,
			Entities: []wire.Entity{{UID: ref, Attrs: norm, Tags: norm}}}}
		t.Run(string(norm), func(t *testing.T) { sameAsLibrary(t, r) })
	}
}

// fuzzSource hands out the fuzz input's bytes; zeros when they run out.
type fuzzSource struct{ b []byte }

func (s *fuzzSource) byte() byte {
	if len(s.b) == 0 {
		return 0
	}
	c := s.b[0]
	s.b = s.b[1:]
	return c
}

func (s *fuzzSource) uint64() uint64 {
	var buf [8]byte
	n := copy(buf[:], s.b)
	s.b = s.b[n:]
	return binary.LittleEndian.Uint64(buf[:])
}

// pieces are the bits strings are made of: each kind of escape, valid and
// invalid UTF-8, what HTML or JavaScript escaping would touch.
var pieces = []string{"a", "Zz", "\"", "\\", "/", "\b", "\f", "\n", "\r", "\t", "\x00", "\x01", "\x1f", "\x7f", "<", ">", "&",
	"é", "\u2028", "\u2029", "\ufffd", "𝄞", "\xff", "\xc3", "\xed\xa0\x80", "\xe2\x82", "\xf4\x90\x80\x80", " ", "::", "\"b\""}

func (s *fuzzSource) string() string {
	n := int(s.byte() % 6)
	var b strings.Builder
	for range n {
		if c := s.byte(); c < 128 {
			b.WriteString(pieces[int(c)%len(pieces)])
		} else {
			b.WriteByte(s.byte()) // any byte at all
		}
	}
	return b.String()
}

// rawTokens are the bits raw JSON is made of, canonical and not.
var rawTokens = []string{`{`, `}`, `[`, `]`, `:`, `,`, `"a"`, `"b"`, `""`, `"\u0061"`, `"\/"`, `"\u001f"`, `"\u001F"`, `"\n"`, `"\u000a"`,
	`"\ud800"`, `"\ud83d\ude00"`, `" "`, " ", "\n", `0`, `-0`, `1.5e+3`, `01`, `1.`, `-`, `true`, `false`, `null`, `nul`, "\"\xff\"", `"é"`, `"<&>"`}

// raw makes embedded JSON: nil, empty, a value the fuzz input shapes
// (mostly canonical, with non-canonical bits in it), or a run of tokens.
func (s *fuzzSource) raw() json.RawMessage {
	switch s.byte() % 8 {
	case 0:
		return nil
	case 1:
		return json.RawMessage{}
	case 2:
		var b []byte
		for range int(s.byte() % 12) {
			b = append(b, rawTokens[int(s.byte())%len(rawTokens)]...)
		}
		return b
	}
	return s.rawValue(nil, 0)
}

func (s *fuzzSource) rawValue(b []byte, depth int) []byte {
	k := s.byte()
	if depth > 4 {
		k %= 4
	}
	switch k % 8 {
	case 0:
		return append(b, `null`...)
	case 1:
		return append(b, rawTokens[int(s.byte())%len(rawTokens)]...) // sometimes not a value
	case 2:
		b, _ = jsontext.AppendQuote(b, s.string())
		return b
	case 3:
		return append(b, []string{"0", "-1", "12.5", "1e-7", "-0.0E+1", "9223372036854775808"}[s.byte()%6]...)
	case 4, 5:
		b = append(b, '{')
		for i := range int(s.byte() % 4) {
			if i > 0 {
				b = append(b, ',')
			}
			b, _ = jsontext.AppendQuote(b, []string{"a", "b", "é", "<", "a\n", s.string()}[s.byte()%6])
			b = append(b, ':')
			b = s.rawValue(b, depth+1)
		}
		return append(b, '}')
	default:
		b = append(b, '[')
		for i := range int(s.byte() % 4) {
			if i > 0 {
				b = append(b, ',')
			}
			b = s.rawValue(b, depth+1)
		}
		return append(b, ']')
	}
}

var zones = []*time.Location{time.UTC, time.FixedZone("", 0), time.FixedZone("a", 3600+30*60), time.FixedZone("b", -(23*3600 + 59*60 + 59)), time.FixedZone("c", 24*3600), time.FixedZone("d", -100*3600)}

// fillFuzz fills v from the fuzz input: each value zero, empty or set,
// as the input says.
func (s *fuzzSource) fill(v reflect.Value) {
	switch v.Type() {
	case timeType:
		sec := int64(s.uint64())
		if s.byte()%2 == 0 {
			sec %= 400 * 365 * 86400 // mostly in range
		}
		v.Set(reflect.ValueOf(time.Unix(sec, int64(s.uint64()%2e9)).In(zones[int(s.byte())%len(zones)])))
		return
	case rawType:
		v.SetBytes(s.raw())
		return
	}
	choice := s.byte()
	switch v.Kind() {
	case reflect.String:
		if choice%4 != 0 {
			v.SetString(s.string())
		}
	case reflect.Bool:
		v.SetBool(choice%2 == 1)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if choice%4 != 0 {
			v.SetInt(int64(s.uint64()))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if choice%4 != 0 {
			v.SetUint(s.uint64())
		}
	case reflect.Pointer:
		if choice%3 != 0 {
			v.Set(reflect.New(v.Type().Elem()))
			if choice%3 == 2 {
				s.fill(v.Elem())
			}
		}
	case reflect.Slice:
		if choice%4 != 0 {
			n := int(choice/4) % 3
			v.Set(reflect.MakeSlice(v.Type(), n, n))
			for i := range n {
				s.fill(v.Index(i))
			}
		}
	case reflect.Map:
		if choice%4 != 0 {
			v.Set(reflect.MakeMap(v.Type()))
			for range int(choice/4) % 4 {
				k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
				s.fill(k)
				s.fill(e)
				v.SetMapIndex(k, e)
			}
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				s.fill(v.Field(i))
			}
		}
	default:
		panic("fill: kind " + v.Kind().String())
	}
}

// FuzzMarshalRecordMatchesLibrary: records and answers made from the fuzz
// input are written, with the fallback, exactly as the library writes them
// (or refused when it refuses them); the fast encoder alone, when it does
// not give up, writes the library's bytes; and what it writes reads back,
// with the strict reader, to a record that writes the same bytes.
func FuzzMarshalRecordMatchesLibrary(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c"))
	f.Add([]byte(strings.Repeat("\x02\x05\x81\xff", 64)))
	f.Add([]byte(strings.Repeat("\x03\x06\x07\x04", 100)))
	for i := range 8 {
		b := make([]byte, 400)
		for j := range b {
			b[j] = byte(j*(7+2*i) + i)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &fuzzSource{b: in}
		r, d := new(wire.DecisionRecord), new(wire.Decision)
		s.fill(reflect.ValueOf(r).Elem())
		s.fill(reflect.ValueOf(d).Elem())
		if s.byte()%4 == 0 && r.Request != nil { // often a request the strict reader takes
			r.Request.Principal, r.Request.Action, r.Request.Resource = wire.EntityRef{Type: "A", ID: "a"}, wire.EntityRef{Type: "B", ID: "\n"}, wire.EntityRef{Type: "C::D", ID: "é"}
		}
		for _, v := range []any{r, d} {
			want, werr := libraryBytes(v)
			got, gerr := marshal(v)
			if (gerr != nil) != (werr != nil) || string(got) != string(want) {
				t.Fatalf("Marshal differs from the library\nMarshal: %v %q\nlibrary: %v %q", gerr, got, werr, want)
			}
			b, ok := fast(v)
			if ok && (werr != nil || string(b) != string(want)) {
				t.Fatalf("the fast encoder differs from the library\n   fast: %q\nlibrary: %v %q", b, werr, want)
			}
			if !ok {
				// The library's shapes: a map key of invalid UTF-8, for
				// one, is sorted by its Go bytes but read back as U+FFFD.
				continue
			}
			back := reflect.New(reflect.TypeOf(v).Elem()).Interface()
			if err := (wire.Reader{}).Unmarshal(got, back); err != nil {
				continue // the reader refuses, for instance, what is not a Cedar type name
			}
			if again, err := marshal(back); err != nil || string(again) != string(got) {
				t.Fatalf("what was written reads back to another value\nwrote %q\nagain %v %q", got, err, again)
			}
		}
	})
}
