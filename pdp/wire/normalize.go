package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cedar-policy/cedar-go/types"
	"github.com/go-json-experiment/json/jsontext"
)

// Agents send whatever JSON their tool calls carry. Cedar's JSON has no
// floats and no null, so rather than refusing such requests the engine
// normalises them, and logs the normalised form, so that a replay of the
// logged request sees exactly what the policies saw:
//
//   - one JSON value is one Cedar value: a number whose value is an
//     integer in Cedar's 64-bit Long range is a Long however it is written
//     (22, 22.0, 2.2e1; -0 is 0), logged as its shortest text;
//   - another number becomes a Cedar decimal when it has at most four
//     fractional digits and is in decimal's range (-922337203685477.5808
//     to 922337203685477.5807), else the string of its JSON text;
//   - null drops the key from an object, or the element from an array;
//   - {"__entity":…} and {"__extn":…} alone in an object keep their Cedar
//     JSON meaning.
//
// The canonical JSON that is logged has sorted keys and no insignificant
// space; it is read with the same rules as every input (no duplicate
// names, valid UTF-8).

// NormalizeRecord normalises a JSON object into a Cedar record and its
// canonical JSON. An absent or null object is the empty record. field is
// the object's JSON pointer, for errors; check refuses a string the log
// must not hold (a raw token), and its error is wrapped with the string's
// pointer.
//
// The common __entity escape, {"__entity":{"type":…,"id":…}}, is read
// here token by token; every other escape goes to cedar-go, so that it
// means in a request exactly what it means in a Cedar JSON file. The
// reference reading in normalize_ref_test.go (cedar-go for every escape)
// and the fuzz target FuzzNormalizeMatchesLibrary hold the two to the same
// values, bytes and errors.
func NormalizeRecord(raw json.RawMessage, field string, check func(string) error) (types.Record, json.RawMessage, error) {
	rec, _, out, err := normalizeRecord(raw, field, check, -1)
	return rec, out, err
}

// NormalizeRecordMap is NormalizeRecord without making the record: the
// object's members in a new map the caller owns, with room for spare more
// (nil for an absent or null object), and the same canonical JSON and
// errors. It is for a caller that adds members before it makes the one
// record: types.NewRecord sorts, hashes and copies a map, so a record
// made and then extended costs two (the engine's context, which gains
// context.identity and context.caller). types.NewRecord of the map is
// the record NormalizeRecord returns.
func NormalizeRecordMap(raw json.RawMessage, field string, check func(string) error, spare int) (types.RecordMap, json.RawMessage, error) {
	_, m, out, err := normalizeRecord(raw, field, check, max(spare, 0))
	return m, out, err
}

// normalizeRecord is NormalizeRecord when keep is negative, else
// NormalizeRecordMap with keep spare members.
func normalizeRecord(raw json.RawMessage, field string, check func(string) error, keep int) (types.Record, types.RecordMap, json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return types.Record{}, nil, json.RawMessage("{}"), nil
	}
	if raw[0] != '{' {
		return types.Record{}, nil, nil, BadRequest(field, errors.New("want a JSON object"))
	}
	n := normalizers.Get().(*normalizer)
	defer n.release()
	n.reset(raw, field, check)
	n.keep = keep
	out := make([]byte, 0, len(raw)+16)
	v, out, err := n.value(out)
	if err != nil {
		return types.Record{}, nil, nil, err
	}
	if _, err := n.dec.ReadToken(); err != nil && !errors.Is(err, io.EOF) {
		return types.Record{}, nil, nil, n.fail(err)
	} else if err == nil {
		return types.Record{}, nil, nil, BadRequest(field, errors.New("unexpected data after the JSON object"))
	}
	rec, ok := v.(types.Record)
	if !ok {
		// An object that is a Cedar escape ({"__entity":…}) is not a record.
		return types.Record{}, nil, nil, BadRequest(field, errors.New("want a record, got an escaped Cedar value"))
	}
	return rec, n.kept, out, nil
}

var normalizers = sync.Pool{New: func() any { return newNormalizer() }}

func newNormalizer() *normalizer {
	n := &normalizer{}
	n.dec = jsontext.NewDecoder(&n.src, readOptions)
	return n
}

// normalizer reads one JSON value token by token, building the Cedar value
// and appending its canonical JSON. It is pooled with its buffers.
type normalizer struct {
	// src is a bytes.Buffer so that the decoder reads the input in place:
	// no copy, and the values ReadValue returns alias the input, which is
	// never written. Read whole, the input's errors name the pointer the
	// library names (jsonv2.Unmarshal of the same bytes); a streaming
	// decoder's pointer for an error inside a value read with ReadValue
	// depends on where its buffer was refilled.
	src    bytes.Buffer
	dec    *jsontext.Decoder
	field  string
	check  func(string) error
	depth  int
	levels []level         // the objects being read, by depth: reused, not reallocated
	sets   [][]types.Value // the arrays being read, by array depth
	adepth int             // array depth
	child  *normalizer     // for an escape's value, read apart (see escape); pooled with n
	// keep, when not negative, says the outermost object's members go to
	// kept, a new map with keep spare places, and not to a record
	// (NormalizeRecordMap).
	keep int
	kept types.RecordMap
}

// reset points n at raw, a JSON value.
func (n *normalizer) reset(raw []byte, field string, check func(string) error) {
	n.src = *bytes.NewBuffer(raw)
	n.dec.Reset(&n.src, readOptions)
	n.field, n.check, n.depth, n.adepth = field, check, 0, 0
	n.keep, n.kept = -1, nil
}

// release drops what n holds of the caller's input and returns it to the
// pool.
func (n *normalizer) release() {
	for c := n; c != nil; c = c.child {
		c.src = bytes.Buffer{}
		c.dec.Reset(&c.src)
		c.check, c.kept = nil, nil
	}
	normalizers.Put(n)
}

// sub is n's child normaliser, made once.
func (n *normalizer) sub() *normalizer {
	if n.child == nil {
		n.child = newNormalizer()
	}
	return n.child
}

// level is an object's members and their canonical JSON while its keys are
// sorted, and the map handed to types.NewRecord (which copies it).
type level struct {
	members []member
	scratch []byte
	rm      types.RecordMap
}

// fail names where the decoder is, under the record's own pointer.
func (n *normalizer) fail(err error) error {
	var re *RequestError
	if errors.As(readError(err), &re) {
		ptr := re.Field
		if ptr == "" {
			ptr = string(n.dec.StackPointer())
		}
		return BadRequest(n.field+ptr, re.Err)
	}
	return BadRequest(n.field, err)
}

// value normalises the next value, appending its canonical JSON to out. A
// null gives a nil value and appends nothing: its key or element is
// dropped.
func (n *normalizer) value(out []byte) (types.Value, []byte, error) {
	switch n.dec.PeekKind() {
	case '{':
		return n.object(out)
	case '[':
		return n.array(out)
	}
	tok, err := n.dec.ReadToken()
	if err != nil {
		return nil, out, n.fail(err)
	}
	switch tok.Kind() {
	case 'n':
		return nil, out, nil
	case 't':
		return types.True, append(out, "true"...), nil
	case 'f':
		return types.False, append(out, "false"...), nil
	case '"':
		s := tok.String()
		if err := n.check(s); err != nil {
			return nil, out, BadRequest(n.field+string(n.dec.StackPointer()), err)
		}
		out, _ = jsontext.AppendQuote(out, s) // valid UTF-8: the decoder checked
		return types.String(s), out, nil
	case '0':
		v, out := normalizeNumber(tok.String(), out)
		return v, out, nil
	}
	return nil, out, n.fail(fmt.Errorf("unexpected %v", tok.Kind()))
}

func (n *normalizer) array(out []byte) (types.Value, []byte, error) {
	if _, err := n.dec.ReadToken(); err != nil {
		return nil, out, n.fail(err)
	}
	d := n.adepth
	if d == len(n.sets) {
		n.sets = append(n.sets, nil)
	}
	n.adepth++
	defer func() { n.adepth-- }()
	// vals is this array depth's, reused: types.NewSet copies it.
	vals := n.sets[d][:0]
	defer func() { clear(vals); n.sets[d] = vals[:0] }()
	out = append(out, '[')
	for n.dec.PeekKind() != ']' {
		mark := len(out)
		if len(vals) > 0 {
			out = append(out, ',')
		}
		v, o, err := n.value(out)
		if err != nil {
			return nil, out, err
		}
		if v == nil {
			out = out[:mark] // a null element is dropped, with its comma
			continue
		}
		out = o
		vals = append(vals, v)
	}
	if _, err := n.dec.ReadToken(); err != nil {
		return nil, out, n.fail(err)
	}
	if len(vals) == 0 {
		return types.NewSet(), append(out, ']'), nil // as NewSet of a nil slice
	}
	return types.NewSet(vals...), append(out, ']'), nil
}

// member is one kept member of an object: its name, its Cedar value and its
// canonical JSON's span in the object's scratch buffer.
type member struct {
	name       string
	value      types.Value
	start, end int
}

func (n *normalizer) object(out []byte) (types.Value, []byte, error) {
	if _, err := n.dec.ReadToken(); err != nil {
		return nil, out, n.fail(err)
	}
	d := n.depth
	if d == len(n.levels) {
		n.levels = append(n.levels, level{})
	}
	n.depth++
	defer func() { n.depth-- }()
	// members and scratch (their canonical JSON, in arrival order) are
	// this depth's; deeper objects use the next level.
	members, scratch := n.levels[d].members[:0], n.levels[d].scratch[:0]
	defer func() {
		clear(members)
		n.levels[d].members, n.levels[d].scratch = members[:0], scratch[:0]
	}()
	for first := true; n.dec.PeekKind() != '}'; first = false {
		tok, err := n.dec.ReadToken()
		if err != nil {
			return nil, out, n.fail(err)
		}
		name := tok.String()
		// A member's name is stored in the row as much as its value.
		if err := n.check(name); err != nil {
			return nil, out, BadRequest(n.field+string(n.dec.StackPointer()), err)
		}
		if first && (name == "__entity" || name == "__extn") {
			v, o, done, err := n.escape(name, out)
			if err != nil || done {
				return v, o, err
			}
			// More members follow: an ordinary record with a member of
			// that name, whose value was read already.
			if v != nil {
				start := len(scratch)
				scratch = append(scratch, o[len(out):]...)
				members = append(members, member{name: name, value: v, start: start, end: len(scratch)})
			}
			continue
		}
		start := len(scratch)
		v, s, err := n.value(scratch)
		if err != nil {
			return nil, out, err
		}
		scratch = s
		if v != nil {
			members = append(members, member{name: name, value: v, start: start, end: len(scratch)})
		}
	}
	if _, err := n.dec.ReadToken(); err != nil {
		return nil, out, n.fail(err)
	}
	slices.SortFunc(members, func(a, b member) int { return strings.Compare(a.name, b.name) })
	var rm types.RecordMap
	if d == 0 && n.keep >= 0 {
		// The caller's (NormalizeRecordMap), which makes the record.
		rm = make(types.RecordMap, len(members)+n.keep)
		n.kept = rm
	} else {
		// This depth's map, reused: types.NewRecord copies it.
		if rm = n.levels[d].rm; rm == nil {
			rm = make(types.RecordMap, len(members))
			n.levels[d].rm = rm
		}
		defer clear(rm)
	}
	out = append(out, '{')
	for i, m := range members {
		if i > 0 {
			out = append(out, ',')
		}
		out, _ = jsontext.AppendQuote(out, m.name)
		out = append(out, ':')
		out = append(out, scratch[m.start:m.end]...)
		rm[types.String(m.name)] = m.value
	}
	if n.kept != nil && d == 0 {
		return types.Record{}, append(out, '}'), nil
	}
	return types.NewRecord(rm), append(out, '}'), nil
}

// escape reads the value of an object's first member named __entity or
// __extn. If the object ends there it is Cedar's escape (done is true):
// {"__entity":{"type":…,"id":…}} is read here (entityEscape), any other
// form is handed to cedar-go, so that it means in a request exactly what
// it means in a Cedar JSON file. Otherwise the value is normalised as any
// other member's, and its canonical JSON appended to out.
func (n *normalizer) escape(name string, out []byte) (v types.Value, o []byte, done bool, err error) {
	// The value is read whole first: only what follows it says whether
	// the object is an escape. It aliases the input (see src).
	raw, err := n.dec.ReadValue()
	if err != nil {
		return nil, out, false, n.fail(err)
	}
	if n.dec.PeekKind() == '}' {
		if _, err := n.dec.ReadToken(); err != nil {
			return nil, out, false, n.fail(err)
		}
		// The escape's pointer, for errors: the decoder stays here.
		field := func() string { return n.field + string(n.dec.StackPointer()) }
		if name == "__entity" {
			if uid, ok := n.entityEscape(raw); ok {
				if err := n.check(string(uid.Type)); err != nil {
					return nil, out, false, BadRequest(field(), err)
				}
				if err := n.check(string(uid.ID)); err != nil {
					return nil, out, false, BadRequest(field(), err)
				}
				return uid, appendEntityEscape(out, uid), true, nil
			}
		}
		cv, b, err := libraryEscape(name, raw, field(), n.check)
		if err != nil {
			return nil, out, false, err
		}
		return cv, append(out, b...), true, nil
	}
	sub := n.sub()
	sub.reset(raw, n.field+string(n.dec.StackPointer()), n.check)
	v, o, err = sub.value(out)
	return v, o, false, err
}

// libraryEscape reads a Cedar escape, {name:raw}, with cedar-go and writes
// it with encoding/json. field is the escape's JSON pointer, for errors.
func libraryEscape(name string, raw []byte, field string, check func(string) error) (types.Value, []byte, error) {
	obj := make([]byte, 0, len(name)+len(raw)+6)
	obj = append(append(append(append(obj, `{"`...), name...), `":`...), raw...)
	obj = append(obj, '}')
	var cv types.Value
	if err := types.UnmarshalJSON(obj, &cv); err != nil {
		return nil, nil, BadRequest(field, fmt.Errorf("invalid Cedar escape %s: %w", truncate(obj, 80), err))
	}
	if uid, ok := cv.(types.EntityUID); ok {
		for _, s := range []string{string(uid.Type), string(uid.ID)} {
			if err := check(s); err != nil {
				return nil, nil, BadRequest(field, err)
			}
		}
	}
	b, err := json.Marshal(cv)
	if err != nil {
		return nil, nil, BadRequest(field, escapeNotWritable(obj))
	}
	return cv, b, nil
}

// escapeNotWritable is the error for an escape cedar-go reads but cannot
// write back, such as {"__entity":{"Type":…}}: it reads that as a record
// whose key is the reserved __entity, which no record may have. The log
// keeps what was decided on, so such a value is refused.
func escapeNotWritable(obj []byte) error {
	return fmt.Errorf(`invalid Cedar escape %s: want {"__entity": {"type": "T", "id": "I"}} or {"__extn": {"fn": "F", "arg": "A"}}, names in lower case`, truncate(obj, 80))
}

// entityEscape reads raw, the value of an __entity escape (valid JSON: the
// decoder checked it), when it is exactly {"type":"…","id":"…"} (either
// order) with a valid Cedar entity type. Anything else (escaped names,
// extra members, other kinds, a bad type) is not ok, and goes to cedar-go,
// which decides what it means and how it is refused.
func (n *normalizer) entityEscape(raw []byte) (types.EntityUID, bool) {
	c := n.sub()
	c.src = *bytes.NewBuffer(raw)
	c.dec.Reset(&c.src, readOptions)
	dec := c.dec
	if dec.PeekKind() != '{' {
		return types.EntityUID{}, false
	}
	if _, err := dec.ReadToken(); err != nil {
		return types.EntityUID{}, false
	}
	var typ, id string
	var haveType, haveID bool
	for dec.PeekKind() == '"' {
		name, err := dec.ReadValue() // the quoted name, as written
		if err != nil || dec.PeekKind() != '"' {
			return types.EntityUID{}, false
		}
		tok, err := dec.ReadToken()
		if err != nil {
			return types.EntityUID{}, false
		}
		switch string(name) {
		case `"type"`:
			typ, haveType = tok.String(), true
		case `"id"`:
			id, haveID = tok.String(), true
		default:
			return types.EntityUID{}, false
		}
	}
	if !haveType || !haveID || dec.PeekKind() != '}' {
		return types.EntityUID{}, false
	}
	if _, err := dec.ReadToken(); err != nil {
		return types.EntityUID{}, false
	}
	et, err := types.NewEntityType(typ)
	if err != nil {
		return types.EntityUID{}, false
	}
	return types.NewEntityUID(et, types.String(id)), true
}

// appendEntityEscape appends uid as libraryEscape writes it:
// EntityUID.MarshalJSON's {"__entity":{"type":…,"id":…}} through
// encoding/json, which escapes <, >, & and U+2028, U+2029 for HTML.
func appendEntityEscape(out []byte, uid types.EntityUID) []byte {
	out = append(out, `{"__entity":{"type":`...)
	out = appendQuoteHTML(out, string(uid.Type))
	out = append(out, `,"id":`...)
	out = appendQuoteHTML(out, string(uid.ID))
	return append(out, "}}"...)
}

// appendQuoteHTML is jsontext.AppendQuote (s is valid UTF-8) followed by
// encoding/json's HTML escaping of a Marshaler's output (appendCompact):
// <, >, & become \u003c, \u003e, \u0026, and U+2028, U+2029 \u2028, \u2029.
func appendQuoteHTML(out []byte, s string) []byte {
	start := len(out)
	out, _ = jsontext.AppendQuote(out, s)
	if !strings.ContainsAny(s, "<>&\u2028\u2029") {
		return out
	}
	q := string(out[start:])
	out = out[:start]
	const hex = "0123456789abcdef"
	for i := 0; i < len(q); i++ {
		switch c := q[i]; {
		case c == '<' || c == '>' || c == '&':
			out = append(out, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
		case c == 0xE2 && i+2 < len(q) && q[i+1] == 0x80 && q[i+2]&^1 == 0xA8:
			out = append(out, '\\', 'u', '2', '0', '2', hex[q[i+2]&0xF])
			i += 2
		default:
			out = append(out, c)
		}
	}
	return out
}

var decimalScale = big.NewInt(10000)

// normalizeNumber converts the text of a JSON number. One JSON value is
// one Cedar value, however it is written: an integer value in Long's range
// (22, 22.0, 2.2e1, -0) is a Long, written as its shortest text; else a
// value with at most four fractional digits in decimal's range is a
// decimal; else the string of its text.
func normalizeNumber(s string, out []byte) (types.Value, []byte) {
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return types.Long(i), strconv.AppendInt(out, i, 10)
		}
		out, _ = jsontext.AppendQuote(out, s)
		return types.String(s), out
	}
	if len(s) <= 64 {
		var p numberParts
		p.read(s)
		if i, ok := p.long(); ok {
			return types.Long(i), strconv.AppendInt(out, i, 10)
		}
		if d, ok := p.toDecimal(s); ok {
			b, _ := d.MarshalJSON() // cannot fail: a decimal always marshals
			return d, append(out, b...)
		}
	}
	out, _ = jsontext.AppendQuote(out, s)
	return types.String(s), out
}

// numberParts is the text of a JSON number (of at most 64 bytes) read as
// sign × digits × 10^exp: digits without leading or trailing zeros (none
// for zero), exp what places them. huge says the exponent is beyond 1,000
// either way, where no Long or decimal is.
type numberParts struct {
	neg    bool
	buf    [64]byte
	digits []byte
	exp    int
	huge   bool
}

func (p *numberParts) read(s string) {
	i := 0
	if i < len(s) && s[i] == '-' {
		p.neg = true
		i++
	}
	p.digits = p.buf[:0]
	frac := 0 // digits after the point
	for point := false; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			if point {
				frac++
			}
			if c != '0' || len(p.digits) > 0 {
				p.digits = append(p.digits, c)
			}
			continue
		case c == '.' && !point:
			point = true
			continue
		}
		break
	}
	tz := 0
	for len(p.digits) > 0 && p.digits[len(p.digits)-1] == '0' {
		p.digits, tz = p.digits[:len(p.digits)-1], tz+1
	}
	exp := 0
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		neg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			neg = s[i] == '-'
			i++
		}
		for ; i < len(s); i++ {
			if exp = exp*10 + int(s[i]-'0'); exp > 1000 {
				p.huge = true
				return
			}
		}
		if neg {
			exp = -exp
		}
	}
	p.exp = exp - frac + tz
}

// long is the value as a Long, if it is an integer in Long's range.
func (p *numberParts) long() (int64, bool) {
	if len(p.digits) == 0 {
		return 0, true // zero, whatever its sign and exponent
	}
	if p.huge || p.exp < 0 || len(p.digits)+p.exp > 19 {
		return 0, false
	}
	var b [21]byte
	t := b[:0]
	if p.neg {
		t = append(t, '-')
	}
	t = append(t, p.digits...)
	for range p.exp {
		t = append(t, '0')
	}
	i, err := strconv.ParseInt(string(t), 10, 64)
	return i, err == nil
}

// toDecimal converts s, the text p was read from, to a Cedar decimal when
// it is exactly representable: at most four fractional digits, within the
// range of an int64 count of ten-thousandths (both ends included). The
// exact test (big.Rat) runs only when the digits and exponent allow it:
// its cost grows with the exponent, and 1e-999999 built 10^999999 (about
// 100 ms and 4 MB) to find it is not a decimal.
func (p *numberParts) toDecimal(s string) (types.Decimal, bool) {
	if len(p.digits) == 0 {
		d, err := types.NewDecimal(0, -4)
		return d, err == nil
	}
	if p.huge || p.exp < -4 || len(p.digits)+p.exp > 16 {
		return types.Decimal{}, false
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return types.Decimal{}, false
	}
	r.Mul(r, new(big.Rat).SetInt(decimalScale))
	if !r.IsInt() || !r.Num().IsInt64() {
		return types.Decimal{}, false
	}
	d, err := types.NewDecimal(r.Num().Int64(), -4)
	if err != nil {
		return types.Decimal{}, false
	}
	return d, true
}
