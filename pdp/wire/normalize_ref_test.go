package wire

// The reference reading: NormalizeRecord as it was before its fast path
// (an __entity escape read by cedar-go's types.UnmarshalJSON and written
// by encoding/json, a sub-normaliser per escape-named member). The
// differential tests and fuzz targets in normalize_diff_test.go hold
// NormalizeRecord to it: same accept or refuse, same Cedar value, same
// canonical bytes, same error. Do not optimise this file.

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

// refNormalizeRecord normalises a JSON object into a Cedar record and its
// canonical JSON. An absent or null object is the empty record. field is
// the object's JSON pointer, for errors; check refuses a string the log
// must not hold (a raw token), and its error is wrapped with the string's
// pointer.
func refNormalizeRecord(raw json.RawMessage, field string, check func(string) error) (types.Record, json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return types.Record{}, json.RawMessage("{}"), nil
	}
	if raw[0] != '{' {
		return types.Record{}, nil, BadRequest(field, errors.New("want a JSON object"))
	}
	n := refNormalizers.Get().(*refNormalizer)
	defer refNormalizers.Put(n)
	n.src.Reset(raw)
	n.dec.Reset(&n.src, readOptions)
	n.field, n.check, n.depth = field, check, 0
	defer func() { n.check = nil }()
	out := make([]byte, 0, len(raw)+16)
	v, out, err := n.value(out)
	if err != nil {
		return types.Record{}, nil, err
	}
	if _, err := n.dec.ReadToken(); err != nil && !errors.Is(err, io.EOF) {
		return types.Record{}, nil, n.fail(err)
	} else if err == nil {
		return types.Record{}, nil, BadRequest(field, errors.New("unexpected data after the JSON object"))
	}
	rec, ok := v.(types.Record)
	if !ok {
		// An object that is a Cedar escape ({"__entity":…}) is not a record.
		return types.Record{}, nil, BadRequest(field, errors.New("want a record, got an escaped Cedar value"))
	}
	return rec, out, nil
}

var refNormalizers = sync.Pool{New: func() any {
	n := &refNormalizer{}
	n.dec = jsontext.NewDecoder(&n.src)
	return n
}}

// normalizer reads one JSON value token by token, building the Cedar value
// and appending its canonical JSON. It is pooled with its buffers.
type refNormalizer struct {
	src    bytes.Reader
	dec    *jsontext.Decoder
	field  string
	check  func(string) error
	depth  int
	levels []refLevel // the objects being read, by depth: reused, not reallocated
}

// level is an object's members and their canonical JSON while its keys are
// sorted.
type refLevel struct {
	members []refMember
	scratch []byte
}

// fail names where the decoder is, under the record's own pointer.
func (n *refNormalizer) fail(err error) error {
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
func (n *refNormalizer) value(out []byte) (types.Value, []byte, error) {
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
		v, out := refNormalizeNumber(tok.String(), out)
		return v, out, nil
	}
	return nil, out, n.fail(fmt.Errorf("unexpected %v", tok.Kind()))
}

func (n *refNormalizer) array(out []byte) (types.Value, []byte, error) {
	if _, err := n.dec.ReadToken(); err != nil {
		return nil, out, n.fail(err)
	}
	var vals []types.Value
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
	return types.NewSet(vals...), append(out, ']'), nil
}

// member is one kept member of an object: its name, its Cedar value and its
// canonical JSON's span in the object's scratch buffer.
type refMember struct {
	name       string
	value      types.Value
	start, end int
}

func (n *refNormalizer) object(out []byte) (types.Value, []byte, error) {
	if _, err := n.dec.ReadToken(); err != nil {
		return nil, out, n.fail(err)
	}
	d := n.depth
	if d == len(n.levels) {
		n.levels = append(n.levels, refLevel{})
	}
	n.depth++
	defer func() { n.depth-- }()
	// members and scratch (their canonical JSON, in arrival order) are
	// this depth's; deeper objects use the next level.
	members, scratch := n.levels[d].members[:0], n.levels[d].scratch[:0]
	defer func() { n.levels[d].members, n.levels[d].scratch = members[:0], scratch[:0] }()
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
				members = append(members, refMember{name: name, value: v, start: start, end: len(scratch)})
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
			members = append(members, refMember{name: name, value: v, start: start, end: len(scratch)})
		}
	}
	if _, err := n.dec.ReadToken(); err != nil {
		return nil, out, n.fail(err)
	}
	slices.SortFunc(members, func(a, b refMember) int { return strings.Compare(a.name, b.name) })
	rm := make(types.RecordMap, len(members))
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
	return types.NewRecord(rm), append(out, '}'), nil
}

// escape reads the value of an object's first member named __entity or
// __extn. If the object ends there it is Cedar's escape, handed to
// cedar-go so that it means in a request exactly what it means in a Cedar
// JSON file (done is true). Otherwise the value is normalised as any other
// member's, and its canonical JSON appended to out.
func (n *refNormalizer) escape(name string, out []byte) (v types.Value, o []byte, done bool, err error) {
	raw, err := n.dec.ReadValue()
	if err != nil {
		return nil, out, false, n.fail(err)
	}
	raw = bytes.Clone(raw) // the decoder reuses its buffer
	if n.dec.PeekKind() == '}' {
		if _, err := n.dec.ReadToken(); err != nil {
			return nil, out, false, n.fail(err)
		}
		field := n.field + string(n.dec.StackPointer())
		obj := append(append(append([]byte(`{"`), name...), `":`...), raw...)
		obj = append(obj, '}')
		var cv types.Value
		if err := types.UnmarshalJSON(obj, &cv); err != nil {
			return nil, out, false, BadRequest(field, fmt.Errorf("invalid Cedar escape %s: %w", truncate(obj, 80), err))
		}
		if uid, ok := cv.(types.EntityUID); ok {
			for _, s := range []string{string(uid.Type), string(uid.ID)} {
				if err := n.check(s); err != nil {
					return nil, out, false, BadRequest(field, err)
				}
			}
		}
		b, err := json.Marshal(cv)
		if err != nil {
			return nil, out, false, BadRequest(field, escapeNotWritable(obj))
		}
		return cv, append(out, b...), true, nil
	}
	sub := &refNormalizer{dec: jsontext.NewDecoder(bytes.NewReader(raw), readOptions),
		field: n.field + string(n.dec.StackPointer()), check: n.check}
	v, o, err = sub.value(out)
	return v, o, false, err
}

var refDecimalScale = big.NewInt(10000)

// refNormalizeNumber converts the text of a JSON number: a Long if it is an
// integer that fits, a decimal if it is exactly one, else the string of
// its text.
func refNormalizeNumber(s string, out []byte) (types.Value, []byte) {
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return types.Long(i), strconv.AppendInt(out, i, 10)
		}
		out, _ = jsontext.AppendQuote(out, s)
		return types.String(s), out
	}
	// One JSON value, one Cedar value: an integer value in Long's range is
	// a Long however it is written.
	if r, ok := new(big.Rat).SetString(s); len(s) <= 64 && ok && r.IsInt() && r.Num().IsInt64() {
		return types.Long(r.Num().Int64()), strconv.AppendInt(out, r.Num().Int64(), 10)
	}
	if d, ok := refToDecimal(s); ok {
		b, _ := d.MarshalJSON() // cannot fail: a decimal always marshals
		return d, append(out, b...)
	}
	out, _ = jsontext.AppendQuote(out, s)
	return types.String(s), out
}

// refToDecimal converts the text of a JSON number to a Cedar decimal when it is
// exactly representable: at most four fractional digits, within the range
// of an int64 count of ten-thousandths (both ends included).
func refToDecimal(s string) (types.Decimal, bool) {
	if len(s) > 64 {
		return types.Decimal{}, false // refuses exponents that would make huge rationals
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return types.Decimal{}, false
	}
	r.Mul(r, new(big.Rat).SetInt(refDecimalScale))
	if !r.IsInt() || !r.Num().IsInt64() {
		return types.Decimal{}, false
	}
	d, err := types.NewDecimal(r.Num().Int64(), -4)
	if err != nil {
		return types.Decimal{}, false
	}
	return d, true
}
