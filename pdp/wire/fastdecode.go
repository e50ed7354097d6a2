package wire

import (
	"encoding/json"
	"unicode/utf8"

	"github.com/cedar-policy/cedar-go/types"
)

// decodeFast decodes the shape nearly every request has in one pass over
// the bytes, where the strict decoder (decodeStrict and the UnmarshalJSON
// methods) reads each byte several times: it was a fifth of the daemon's
// CPU. It gives up, returning false, on anything it is not certain to read
// exactly as the strict decoder would: escapes in strings, nulls, keys in
// another case, duplicate keys, credentials, the Cedar string form of
// references, {"__entity":…}. The strict decoder then decides, with its
// error messages. FuzzDecodeFast holds the two to the same answers.
func decodeFast(b []byte) (*Request, bool) {
	d := fastDecoder{b: b}
	var r Request
	if !d.request(&r) {
		return nil, false
	}
	d.space()
	if d.i != len(d.b) {
		return nil, false
	}
	return &r, true
}

type fastDecoder struct {
	b []byte
	i int
}

func (d *fastDecoder) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// consume skips space and then c.
func (d *fastDecoder) consume(c byte) bool {
	d.space()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// object calls field for each key of an object, which must read the value.
// A key seen twice gives up: encoding/json would keep the last value, and
// this decoder would have to undo the first.
func (d *fastDecoder) object(field func(key string) bool) bool {
	if !d.consume('{') {
		return false
	}
	if d.consume('}') {
		return true
	}
	var seen [16]string
	n := 0
	for {
		d.space()
		key, ok := d.str()
		if !ok || !d.consume(':') {
			return false
		}
		for _, k := range seen[:n] {
			if k == key {
				return false
			}
		}
		if n == len(seen) {
			return false
		}
		seen[n] = key
		n++
		d.space()
		if !field(key) {
			return false
		}
		if d.consume(',') {
			continue
		}
		return d.consume('}')
	}
}

// str reads a string without escapes, control characters or invalid UTF-8:
// those the strict decoder rewrites, so it must read them itself.
func (d *fastDecoder) str() (string, bool) {
	s, ok := d.strBytes()
	return string(s), ok
}

// strBytes is str without the copy, for what only checks the syntax.
func (d *fastDecoder) strBytes() ([]byte, bool) {
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return nil, false
	}
	start := d.i + 1
	for j := start; j < len(d.b); j++ {
		c := d.b[j]
		switch {
		case c == '"':
			s := d.b[start:j]
			if !utf8.Valid(s) {
				return nil, false
			}
			d.i = j + 1
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

// raw reads any JSON value and returns a copy of its bytes, as a
// json.RawMessage field receives it.
func (d *fastDecoder) raw() (json.RawMessage, bool) {
	start := d.i
	if !d.skip(0) {
		return nil, false
	}
	v := d.b[start:d.i]
	if v[0] == 'n' { // null: the strict decoder keeps "null"; let it
		return nil, false
	}
	return append(json.RawMessage(nil), v...), true
}

// skip passes over one value, checking its syntax; depth bounds recursion.
func (d *fastDecoder) skip(depth int) bool {
	if depth > 64 {
		return false
	}
	d.space()
	if d.i >= len(d.b) {
		return false
	}
	switch c := d.b[d.i]; {
	case c == '{':
		d.i++
		if d.consume('}') {
			return true
		}
		for {
			d.space()
			if _, ok := d.strBytes(); !ok || !d.consume(':') || !d.skip(depth+1) {
				return false
			}
			if d.consume(',') {
				continue
			}
			return d.consume('}')
		}
	case c == '[':
		return d.array(func() bool { return d.skip(depth + 1) })
	case c == '"':
		_, ok := d.strBytes()
		return ok
	case c == 't':
		return d.literal("true")
	case c == 'f':
		return d.literal("false")
	case c == 'n':
		return d.literal("null")
	default:
		return d.number()
	}
}

func (d *fastDecoder) literal(s string) bool {
	if len(d.b)-d.i >= len(s) && string(d.b[d.i:d.i+len(s)]) == s {
		d.i += len(s)
		return true
	}
	return false
}

// number reads a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *fastDecoder) number() bool {
	digits := func() int {
		n := 0
		for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
			d.i++
			n++
		}
		return n
	}
	if d.i < len(d.b) && d.b[d.i] == '-' {
		d.i++
	}
	if d.i < len(d.b) && d.b[d.i] == '0' {
		d.i++
	} else if digits() == 0 {
		return false
	}
	if d.i < len(d.b) && d.b[d.i] == '.' {
		d.i++
		if digits() == 0 {
			return false
		}
	}
	if d.i < len(d.b) && (d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		d.i++
		if d.i < len(d.b) && (d.b[d.i] == '+' || d.b[d.i] == '-') {
			d.i++
		}
		if digits() == 0 {
			return false
		}
	}
	return true
}

// ref reads {"type":"…","id":"…"} in either order, both required.
func (d *fastDecoder) ref(r *EntityRef) bool {
	var haveType, haveID bool
	ok := d.object(func(key string) bool {
		var ok bool
		switch key {
		case "type":
			r.Type, ok = d.str()
			haveType = ok
		case "id":
			r.ID, ok = d.str()
			haveID = ok
		}
		return ok
	})
	if !ok || !haveType || !haveID {
		return false
	}
	_, err := types.NewEntityType(r.Type)
	return err == nil
}

// array reads [elem, elem, …], elem reading each element.
func (d *fastDecoder) array(elem func() bool) bool {
	if !d.consume('[') {
		return false
	}
	if d.consume(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if !d.consume(',') {
			return d.consume(']')
		}
	}
}

func (d *fastDecoder) refs() ([]EntityRef, bool) {
	var out []EntityRef
	ok := d.array(func() bool {
		var r EntityRef
		if !d.ref(&r) {
			return false
		}
		out = append(out, r)
		return true
	})
	return out, ok
}

func (d *fastDecoder) entity(e *Entity) bool {
	return d.object(func(key string) bool {
		var ok bool
		switch key {
		case "uid":
			ok = d.ref(&e.UID)
		case "attrs":
			e.Attrs, ok = d.raw()
		case "parents":
			e.Parents, ok = d.refs()
		case "tags":
			e.Tags, ok = d.raw()
		}
		return ok
	})
}

func (d *fastDecoder) request(r *Request) bool {
	return d.object(func(key string) bool {
		var ok bool
		switch key {
		case "principal":
			ok = d.ref(&r.Principal)
		case "action":
			ok = d.ref(&r.Action)
		case "resource":
			ok = d.ref(&r.Resource)
		case "context":
			r.Context, ok = d.raw()
		case "entities":
			ok = d.array(func() bool {
				var e Entity
				if !d.entity(&e) {
					return false
				}
				r.Entities = append(r.Entities, e)
				return true
			})
		case "session_id":
			r.SessionID, ok = d.str()
		case "task_id":
			r.TaskID, ok = d.str()
		case "trace_id":
			r.TraceID, ok = d.str()
		case "parent_decision_id":
			r.ParentDecisionID, ok = d.str()
		case "tool_call_id":
			r.ToolCallID, ok = d.str()
		case "on_behalf_of":
			r.OnBehalfOf, ok = d.str()
		case "prompt":
			r.Prompt, ok = d.str()
		case "approval":
			r.Approval, ok = d.str()
		}
		return ok
	})
}
