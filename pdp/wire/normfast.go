package wire

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"

	"github.com/cedar-policy/cedar-go/types"
)

// normalizeFast is normalizeRecord for the JSON agents send, converting the
// text to Cedar values and canonical JSON in one pass instead of building
// encoding/json's map tree first: the tree was the daemon's largest
// allocation. Like decodeFast it gives up, returning false, on anything it
// is not certain to treat exactly as normalizeRecord does, which then
// decides, with its error messages: escapes in strings, a string that
// might be a raw token, duplicate keys, Cedar escapes other than a plain
// {"__entity":{"type":…,"id":…}}, anything but an object at the top.
// FuzzDecodeFast holds the two to the same results.
func normalizeFast(raw []byte, check func(string) error) (types.Record, []byte, bool) {
	n := normalizer{d: fastDecoder{b: raw}, check: check}
	n.out.Grow(len(raw) + 16)
	n.d.space()
	if n.d.i >= len(raw) || raw[n.d.i] != '{' {
		return types.Record{}, nil, false
	}
	v, ok := n.value(0)
	if !ok {
		return types.Record{}, nil, false
	}
	n.d.space()
	rec, isRecord := v.(types.Record)
	if n.d.i != len(raw) || !isRecord {
		return types.Record{}, nil, false
	}
	return rec, n.out.Bytes(), true
}

type normalizer struct {
	d       fastDecoder
	check   func(string) error // refuses a string the log must not hold
	out     bytes.Buffer       // canonical JSON
	scratch []byte             // an object's values while its keys are sorted
}

// value normalises one value and appends its canonical JSON; a null gives
// nil and appends nothing (its key or element is dropped).
func (n *normalizer) value(depth int) (types.Value, bool) {
	if depth > 64 {
		return nil, false
	}
	d := &n.d
	d.space()
	if d.i >= len(d.b) {
		return nil, false
	}
	switch c := d.b[d.i]; {
	case c == '{':
		return n.object(depth)
	case c == '[':
		return n.array(depth)
	case c == '"':
		s, ok := d.str()
		if !ok || n.check(s) != nil {
			return nil, false
		}
		writeJSONString(&n.out, s)
		return types.String(s), true
	case c == 't':
		n.out.WriteString("true")
		return types.True, d.literal("true")
	case c == 'f':
		n.out.WriteString("false")
		return types.False, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	default:
		start := d.i
		if !d.number() {
			return nil, false
		}
		return normalizeNumber(json.Number(d.b[start:d.i]), &n.out), true
	}
}

func (n *normalizer) array(depth int) (types.Value, bool) {
	d := &n.d
	d.i++
	n.out.WriteByte('[')
	var vals []types.Value
	if !d.consume(']') {
		for {
			if len(vals) > 0 {
				n.out.WriteByte(',')
			}
			mark := n.out.Len()
			v, ok := n.value(depth + 1)
			if !ok {
				return nil, false
			}
			if v == nil {
				n.out.Truncate(mark - min(len(vals), 1)) // a null leaves no element, and no comma
			} else {
				vals = append(vals, v)
			}
			if d.consume(',') {
				continue
			}
			if !d.consume(']') {
				return nil, false
			}
			break
		}
	}
	n.out.WriteByte(']')
	return types.NewSet(vals...), true
}

type member struct {
	key        string
	val        types.Value
	start, end int // its value's canonical JSON in out
}

func (n *normalizer) object(depth int) (types.Value, bool) {
	d := &n.d
	d.i++
	if d.consume('}') {
		n.out.WriteString("{}")
		return types.NewRecord(types.RecordMap{}), true
	}
	d.space()
	if bytes.HasPrefix(d.b[d.i:], []byte(`"__entity"`)) {
		return n.entity()
	}
	objStart := n.out.Len()
	var small [8]member
	ms := small[:0]
	for {
		d.space()
		key, ok := d.str()
		if !ok || !d.consume(':') || key == "__entity" || key == "__extn" {
			return nil, false // Cedar escapes mixed with other keys: normalizeRecord's
		}
		start := n.out.Len()
		v, ok := n.value(depth + 1)
		if !ok {
			return nil, false
		}
		ms = append(ms, member{key, v, start, n.out.Len()})
		if d.consume(',') {
			continue
		}
		if !d.consume('}') {
			return nil, false
		}
		break
	}
	slices.SortStableFunc(ms, func(a, b member) int { return strings.Compare(a.key, b.key) })
	for i := 1; i < len(ms); i++ {
		if ms[i].key == ms[i-1].key {
			return nil, false // the last would win: leave that to encoding/json
		}
	}
	// The values were written in the order they came; write them again in
	// key order, without the nulls.
	n.scratch = append(n.scratch[:0], n.out.Bytes()[objStart:]...)
	n.out.Truncate(objStart)
	n.out.WriteByte('{')
	rec := make(types.RecordMap, len(ms))
	for _, m := range ms {
		if m.val == nil {
			continue
		}
		if len(rec) > 0 {
			n.out.WriteByte(',')
		}
		writeJSONString(&n.out, m.key)
		n.out.WriteByte(':')
		n.out.Write(n.scratch[m.start-objStart : m.end-objStart])
		rec[types.String(m.key)] = m.val
	}
	n.out.WriteByte('}')
	return types.NewRecord(rec), true
}

// entity reads the rest of an object that starts with "__entity": it must
// be exactly {"__entity":{"type":"…","id":"…"}} (in either order, a valid
// type), as normalizeValue's plainEntity requires; it is written as
// cedar-go writes it.
func (n *normalizer) entity() (types.Value, bool) {
	d := &n.d
	d.i += len(`"__entity"`)
	if !d.consume(':') || !d.consume('{') {
		return nil, false
	}
	var typ, id string
	var haveType, haveID bool
	for range 2 {
		d.space()
		key, ok := d.str()
		if !ok || !d.consume(':') {
			return nil, false
		}
		d.space()
		switch {
		case key == "type" && !haveType:
			typ, haveType = d.str()
		case key == "id" && !haveID:
			id, haveID = d.str()
		default:
			return nil, false
		}
		if !d.consume(',') && !(haveType && haveID) {
			return nil, false
		}
	}
	if !haveType || !haveID || !d.consume('}') || !d.consume('}') {
		return nil, false
	}
	if _, err := types.NewEntityType(typ); err != nil {
		return nil, false
	}
	n.out.WriteString(`{"__entity":{"type":`)
	writeJSONString(&n.out, typ)
	n.out.WriteString(`,"id":`)
	writeJSONString(&n.out, id)
	n.out.WriteString(`}}`)
	return types.NewEntityUID(types.EntityType(typ), types.String(id)), true
}
