package wire

import (
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// The record and the answer are written once per decision, so they have a
// hand-written append encoder: the library's reflection, its token state
// machine and its re-validation of embedded raw JSON cost about 2.5 times
// as much. The library stays the reference: the encoder must write exactly
// the bytes jsonv2.Marshal(v, writeOptions) writes (the log hashes them,
// and verification and replay of old rows depend on them), which
// TestFastEncoder_* and FuzzMarshalRecordMatchesLibrary hold it to.
//
// What it writes, as the library does with writeOptions:
//   - members in declaration order, named by their json tags;
//   - omitempty drops a member whose JSON is "", null, {} or [] (so a bool
//     is always written, and a non-nil pointer to a struct whose members
//     are all omitted is dropped); omitzero drops a zero Go value;
//   - a nil slice is [], a nil pointer null;
//   - strings escape only ", \ and the control characters (\b \f \n \r \t,
//     else \u00xx); <, >, &, U+2028 and U+2029 are written as they are; each
//     byte of invalid UTF-8 becomes U+FFFD;
//   - map members in the byte order of their Go keys;
//   - times in RFC 3339 with nanoseconds (time.RFC3339Nano);
//   - embedded raw JSON (json.RawMessage) as the library re-formats it,
//     which for a value already in canonical form (no insignificant space,
//     strings in their shortest escaping, valid UTF-8, no duplicate names)
//     is the value itself.
//
// It gives up (ok false) on the shapes where the library would change or
// refuse something, and MarshalRecord and MarshalDecision then call the
// library, which writes the same bytes or returns its error:
//   - raw JSON that is not canonical, is not valid JSON, nests deeper than
//     maxRawDepth, or has an object of more than maxRawNames members whose
//     names are not in increasing order (the normaliser's always are);
//   - a map key with invalid UTF-8 (two keys may become the same name);
//   - a time whose year is outside 0-9999 or whose zone offset is 24 hours
//     or more (not RFC 3339: the library refuses it).

// maxRawDepth bounds the nesting of raw JSON the encoder checks itself;
// deeper values (the reading refuses anything deeper than max_json_depth,
// 64 by default) go to the library.
const maxRawDepth = 256

type encoder struct {
	keys  []string // scratch for sorting map keys
	names []span   // scratch for the names of open raw objects
}

// span is an object name in raw JSON, its bytes between the quotes.
type span struct{ start, end int }

// pool holds encoders and their buffers, so that writing a record
// allocates only the bytes it returns.
type pooled struct {
	e encoder
	b []byte
}

var encoders = sync.Pool{New: func() any { return &pooled{b: make([]byte, 0, 4096)} }}

// encode runs write with a pooled encoder and buffer and returns a copy of
// what it wrote, or ok false when write gave up.
func encode(write func(e *encoder, b []byte) ([]byte, bool)) ([]byte, bool) {
	p := encoders.Get().(*pooled)
	b, ok := write(&p.e, p.b[:0])
	var out []byte
	if ok {
		out = slices.Clone(b)
	}
	if cap(b) <= 1<<20 { // a rare huge record does not pin its buffer
		p.b = b[:0]
		encoders.Put(p)
	}
	return out, ok
}

// appendRecord appends r as the library writes it, or reports false.
func appendRecord(b []byte, r *DecisionRecord) ([]byte, bool) {
	return new(encoder).record(b, r)
}

// appendDecision appends d as the library writes it, or reports false.
func appendDecision(b []byte, d *Decision) ([]byte, bool) {
	return new(encoder).decision(b, d)
}

// name starts a member: a comma unless it is the object's first.
func name(b []byte, quoted string) []byte {
	if b[len(b)-1] != '{' {
		b = append(b, ',')
	}
	return append(b, quoted...)
}

// unwriteEmpty drops the member begun at mark if its value, from start,
// is empty JSON: what omitempty means to the library.
func unwriteEmpty(b []byte, mark, start int) []byte {
	switch string(b[start:]) {
	case `""`, `null`, `{}`, `[]`:
		return b[:mark]
	}
	return b
}

func str(b []byte, quoted, s string) []byte {
	return appendString(name(b, quoted), s)
}

func strOmitEmpty(b []byte, quoted, s string) []byte {
	if s == "" {
		return b
	}
	return appendString(name(b, quoted), s)
}

func integer(b []byte, quoted string, n int64) []byte {
	return strconv.AppendInt(name(b, quoted), n, 10)
}

func boolean(b []byte, quoted string, v bool) []byte {
	return strconv.AppendBool(name(b, quoted), v)
}

func stringsOmitEmpty(b []byte, quoted string, ss []string) []byte {
	if len(ss) == 0 {
		return b
	}
	b = append(name(b, quoted), '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

// stringMapOmitEmpty writes m with its keys in byte order, as the
// library does under Deterministic.
func (e *encoder) stringMapOmitEmpty(b []byte, quoted string, m map[string]string) ([]byte, bool) {
	if len(m) == 0 {
		return b, true
	}
	keys := e.keys[:0]
	for k := range m {
		if !utf8.ValidString(k) {
			return b, false // two keys may become the same name: the library's to refuse
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(name(b, quoted), '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(appendString(b, k), ':')
		b = appendString(b, m[k])
	}
	clear(keys)
	e.keys = keys[:0]
	return append(b, '}'), true
}

// timeOmitEmpty writes a time as the library does by default, RFC 3339
// with nanoseconds, or reports false for a time RFC 3339 cannot hold.
func timeOmitEmpty(b []byte, quoted string, t *time.Time) ([]byte, bool) {
	if t == nil {
		return b, true
	}
	mark := len(b)
	b = append(name(b, quoted), '"')
	start := len(b)
	b = t.AppendFormat(b, time.RFC3339Nano)
	s := b[start:]
	if s[len("9999")] != '-' { // year outside 0-9999
		return b[:mark], false
	}
	if s[len(s)-1] != 'Z' {
		h := s[len(s)-len("07:00"):]
		if c := s[len(s)-len("Z07:00")]; '0' <= c && c <= '9' || (h[0]-'0')*10+(h[1]-'0') >= 24 {
			return b[:mark], false
		}
	}
	return append(b, '"'), true
}

// rawOmitEmpty writes embedded raw JSON that is already canonical, or
// reports false.
func (e *encoder) rawOmitEmpty(b []byte, quoted string, v json.RawMessage) ([]byte, bool) {
	if v == nil {
		return b, true // json.RawMessage writes null, and omitempty drops it
	}
	if !e.canonical(v) {
		return b, false
	}
	switch string(v) {
	case `""`, `null`, `{}`, `[]`:
		return b, true
	}
	return append(name(b, quoted), v...), true
}

func (e *encoder) record(b []byte, r *DecisionRecord) ([]byte, bool) {
	if r == nil {
		return b, false
	}
	var ok bool
	b = append(b, '{')
	b = str(b, `"decision_id":`, r.DecisionID)
	b = str(b, `"decision":`, string(r.Decision))
	b = str(b, `"principal":`, r.Principal)
	b = str(b, `"action":`, r.Action)
	b = str(b, `"resource":`, r.Resource)
	b = strOmitEmpty(b, `"classification":`, r.Classification)
	if b, ok = e.reasons(b, `"reasons":`, r.Reasons); !ok {
		return b, false
	}
	b = evalErrors(b, `"errors":`, r.Errors)
	b = str(b, `"policy_version":`, r.PolicyVersion)
	b = str(b, `"on_error":`, string(r.OnError))
	if a := r.Approval; a != nil {
		b = append(name(b, `"approval":`), '{')
		b = str(b, `"id":`, a.ID)
		b = str(b, `"approver":`, a.Approver)
		b = append(b, '}')
	}
	b = str(b, `"context_digest":`, r.ContextDigest)
	if b, ok = e.request(name(b, `"request":`), r.Request); !ok {
		return b, false
	}
	b = stringsOmitEmpty(b, `"masked":`, r.Masked)
	if len(r.Provided) > 0 {
		if b, ok = e.entities(name(b, `"provided_entities":`), r.Provided); !ok {
			return b, false
		}
	}
	if len(r.LogOnly) > 0 {
		if b, ok = e.reasons(b, `"log_only":`, r.LogOnly); !ok {
			return b, false
		}
	}
	if s := r.Shadow; s != nil {
		b = append(name(b, `"shadow":`), '{')
		b = str(b, `"decision":`, string(s.Decision))
		if b, ok = e.reasons(b, `"reasons":`, s.Reasons); !ok {
			return b, false
		}
		if len(s.Errors) > 0 {
			b = evalErrors(b, `"errors":`, s.Errors)
		}
		b = str(b, `"policy_version":`, s.PolicyVersion)
		b = append(b, '}')
	}
	if p := r.Peer; p != nil {
		b = peer(name(b, `"peer":`), p)
	}
	if v := r.Evidence; v != nil {
		if b, ok = e.evidence(name(b, `"evidence":`), v); !ok {
			return b, false
		}
	}
	b = boolean(b, `"shared_identity":`, r.SharedIdentity) // omitempty keeps false: it is not empty JSON
	b = integer(b, `"eval_ns":`, r.EvalNanos)
	return append(b, '}'), true
}

func (e *encoder) decision(b []byte, d *Decision) ([]byte, bool) {
	if d == nil {
		return b, false
	}
	var ok bool
	b = append(b, '{')
	b = strOmitEmpty(b, `"decision_id":`, d.DecisionID)
	b = str(b, `"decision":`, string(d.Decision))
	if b, ok = e.reasons(b, `"reasons":`, d.Reasons); !ok {
		return b, false
	}
	b = evalErrors(b, `"errors":`, d.Errors)
	b = str(b, `"policy_version":`, d.PolicyVersion)
	if d.Seq != 0 {
		b = integer(b, `"seq":`, d.Seq)
	}
	return append(b, '}'), true
}

func (e *encoder) reasons(b []byte, quoted string, rs []Reason) ([]byte, bool) {
	var ok bool
	b = append(name(b, quoted), '[')
	for i := range rs {
		r := &rs[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		b = str(b, `"policy":`, r.Policy)
		b = str(b, `"effect":`, r.Effect)
		b = strOmitEmpty(b, `"file":`, r.File)
		if r.Line != 0 {
			b = integer(b, `"line":`, int64(r.Line))
		}
		if b, ok = e.stringMapOmitEmpty(b, `"annotations":`, r.Annotations); !ok {
			return b, false
		}
		if r.Builtin {
			b = boolean(b, `"builtin":`, true)
		}
		b = strOmitEmpty(b, `"detail":`, r.Detail)
		b = append(b, '}')
	}
	return append(b, ']'), true
}

func evalErrors(b []byte, quoted string, es []EvalError) []byte {
	b = append(name(b, quoted), '[')
	for i := range es {
		x := &es[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		b = str(b, `"policy":`, x.Policy)
		b = strOmitEmpty(b, `"effect":`, x.Effect)
		b = strOmitEmpty(b, `"file":`, x.File)
		if x.Line != 0 {
			b = integer(b, `"line":`, int64(x.Line))
		}
		b = str(b, `"message":`, x.Message)
		b = append(b, '}')
	}
	return append(b, ']')
}

func ref(b []byte, r *EntityRef) []byte {
	b = append(b, `{"type":`...)
	b = appendString(b, r.Type)
	b = append(b, `,"id":`...)
	b = appendString(b, r.ID)
	return append(b, '}')
}

func (e *encoder) request(b []byte, r *Request) ([]byte, bool) {
	if r == nil {
		return append(b, "null"...), true
	}
	var ok bool
	b = ref(append(b, `{"principal":`...), &r.Principal)
	b = ref(append(b, `,"action":`...), &r.Action)
	b = ref(append(b, `,"resource":`...), &r.Resource)
	if b, ok = e.rawOmitEmpty(b, `"context":`, r.Context); !ok {
		return b, false
	}
	if len(r.Entities) > 0 {
		if b, ok = e.entities(name(b, `"entities":`), r.Entities); !ok {
			return b, false
		}
	}
	b = strOmitEmpty(b, `"session_id":`, r.SessionID)
	b = strOmitEmpty(b, `"task_id":`, r.TaskID)
	b = strOmitEmpty(b, `"trace_id":`, r.TraceID)
	b = strOmitEmpty(b, `"parent_decision_id":`, r.ParentDecisionID)
	b = strOmitEmpty(b, `"tool_call_id":`, r.ToolCallID)
	b = strOmitEmpty(b, `"on_behalf_of":`, r.OnBehalfOf)
	b = strOmitEmpty(b, `"prompt":`, r.Prompt)
	if c := r.Credential; c != nil {
		mark := len(b)
		b = name(b, `"credential":`)
		start := len(b)
		b = append(b, '{')
		b = strOmitEmpty(b, `"id":`, c.ID)
		b = strOmitEmpty(b, `"issuer":`, c.Issuer)
		b = strOmitEmpty(b, `"subject":`, c.Subject)
		b = stringsOmitEmpty(b, `"scopes":`, c.Scopes)
		if b, ok = timeOmitEmpty(b, `"issued_at":`, c.IssuedAt); !ok {
			return b, false
		}
		if b, ok = timeOmitEmpty(b, `"expires_at":`, c.ExpiresAt); !ok {
			return b, false
		}
		b = unwriteEmpty(append(b, '}'), mark, start)
	}
	b = strOmitEmpty(b, `"approval":`, r.Approval)
	b = strOmitEmpty(b, `"token":`, r.Token)
	return append(b, '}'), true
}

func (e *encoder) entities(b []byte, es []Entity) ([]byte, bool) {
	var ok bool
	b = append(b, '[')
	for i := range es {
		x := &es[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = ref(append(b, `{"uid":`...), &x.UID)
		if b, ok = e.rawOmitEmpty(b, `"attrs":`, x.Attrs); !ok {
			return b, false
		}
		if len(x.Parents) > 0 {
			b = append(name(b, `"parents":`), '[')
			for j := range x.Parents {
				if j > 0 {
					b = append(b, ',')
				}
				b = ref(b, &x.Parents[j])
			}
			b = append(b, ']')
		}
		if b, ok = e.rawOmitEmpty(b, `"tags":`, x.Tags); !ok {
			return b, false
		}
		b = append(b, '}')
	}
	return append(b, ']'), true
}

func peer(b []byte, p *Peer) []byte {
	b = strconv.AppendInt(append(b, `{"pid":`...), int64(p.PID), 10)
	b = strconv.AppendUint(append(b, `,"uid":`...), uint64(p.UID), 10)
	b = strconv.AppendUint(append(b, `,"gid":`...), uint64(p.GID), 10)
	b = strOmitEmpty(b, `"exe":`, p.Exe)
	b = strOmitEmpty(b, `"cgroup":`, p.Cgroup)
	return append(b, '}')
}

func (e *encoder) evidence(b []byte, v *Evidence) ([]byte, bool) {
	var ok bool
	b = appendString(append(b, `{"principal":`...), v.Principal)
	b = strOmitEmpty(b, `"principal_entity":`, v.PrincipalEntity)
	b = strOmitEmpty(b, `"resource_entity":`, v.ResourceEntity)
	b = strOmitEmpty(b, `"credential":`, v.Credential)
	b = strOmitEmpty(b, `"on_behalf_of":`, v.OnBehalfOf)
	b = str(b, `"context":`, v.Context)
	b = strOmitEmpty(b, `"caller":`, v.Caller)
	if b, ok = e.stringMapOmitEmpty(b, `"entities":`, v.Entities); !ok {
		return b, false
	}
	if f := v.Identity; f != nil {
		b = boolean(append(name(b, `"identity":`), '{'), `"verified":`, f.Verified)
		b = strOmitEmpty(b, `"principal":`, f.Principal)
		b = strOmitEmpty(b, `"issuer":`, f.Issuer)
		b = strOmitEmpty(b, `"issuer_name":`, f.IssuerName)
		b = strOmitEmpty(b, `"subject":`, f.Subject)
		b = strOmitEmpty(b, `"spiffe_id":`, f.SPIFFEID)
		b = stringsOmitEmpty(b, `"scopes":`, f.Scopes)
		b = stringsOmitEmpty(b, `"actors":`, f.Actors)
		b = strOmitEmpty(b, `"token_sha256":`, f.TokenSHA256)
		b = strOmitEmpty(b, `"error":`, f.Error)
		b = append(b, '}')
	}
	return append(b, '}'), true
}

// escapes says what a string byte needs: 0 nothing, 1 an escape (", \ and
// the control characters), 2 a look at the UTF-8 sequence it starts.
var escapes = func() (t [256]uint8) {
	for c := range 0x20 {
		t[c] = 1
	}
	t['"'], t['\\'] = 1, 1
	for c := utf8.RuneSelf; c < 256; c++ {
		t[c] = 2
	}
	return t
}()

// appendString appends s quoted as the library does without EscapeForHTML
// and EscapeForJS (jsonwire.AppendQuote): the shortest escaping, and each
// byte of invalid UTF-8 as U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	i := 0 // s[i:n] is not yet appended
	for n := 0; n < len(s); {
		c := s[n]
		switch escapes[c] {
		case 0:
			n++
			continue
		case 2:
			r, size := utf8.DecodeRuneInString(s[n:])
			if r != utf8.RuneError || size != 1 {
				n += size
				continue
			}
			b = append(b, s[i:n]...)
			b = append(b, "\ufffd"...)
		default:
			b = append(b, s[i:n]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, `\b`...)
			case '\f':
				b = append(b, `\f`...)
			case '\n':
				b = append(b, `\n`...)
			case '\r':
				b = append(b, `\r`...)
			case '\t':
				b = append(b, `\t`...)
			default:
				const hex = "0123456789abcdef"
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
		}
		n++
		i = n
	}
	b = append(b, s[i:]...)
	return append(b, '"')
}

// canonical reports whether v is one JSON value that the library's
// re-formatting of embedded raw JSON (jsontext.Encoder.WriteValue under
// writeOptions) accepts and leaves as it is: no insignificant space,
// strings valid UTF-8 in their shortest escaping (RFC 8785, 3.2.2.2), no
// name twice in an object. Being strict is safe (false only sends the
// record to the library); accepting what the library would change or
// refuse is not. Names are compared as they are written: the canonical
// escaping of a string is unique, so two names are the same string
// exactly when their canonical forms are the same bytes. Objects of more
// than maxRawNames members not in increasing order of name are left to
// the library.
func (e *encoder) canonical(v []byte) bool {
	names := e.names[:0]
	n, ok := scanValue(v, 0, 0, &names)
	e.names = names[:0]
	return ok && n == len(v)
}

const maxRawNames = 64

func scanValue(v []byte, i, depth int, names *[]span) (int, bool) {
	if i >= len(v) {
		return i, false
	}
	switch c := v[i]; {
	case c == '{':
		if depth++; depth > maxRawDepth {
			return i, false
		}
		i++
		if i < len(v) && v[i] == '}' {
			return i + 1, true
		}
		base, sorted := len(*names), true
		for {
			if i >= len(v) || v[i] != '"' {
				return i, false
			}
			end, ok := scanString(v, i)
			if !ok {
				return i, false
			}
			name := v[i+1 : end-1]
			open := (*names)[base:]
			if len(open) > 0 {
				// Names in increasing order (the normaliser sorts them)
				// are distinct; others are compared with every name.
				last := open[len(open)-1]
				sorted = sorted && string(name) > string(v[last.start:last.end])
			}
			if !sorted {
				if len(open) >= maxRawNames {
					return i, false
				}
				for _, s := range open {
					if string(v[s.start:s.end]) == string(name) {
						return i, false // a duplicate name: the library refuses it
					}
				}
			}
			*names = append(*names, span{i + 1, end - 1})
			i = end
			if i >= len(v) || v[i] != ':' {
				return i, false
			}
			if i, ok = scanValue(v, i+1, depth, names); !ok || i >= len(v) {
				return i, false
			}
			switch v[i] {
			case ',':
				i++
			case '}':
				*names = (*names)[:base]
				return i + 1, true
			default:
				return i, false
			}
		}
	case c == '[':
		if depth++; depth > maxRawDepth {
			return i, false
		}
		i++
		if i < len(v) && v[i] == ']' {
			return i + 1, true
		}
		for {
			var ok bool
			if i, ok = scanValue(v, i, depth, names); !ok || i >= len(v) {
				return i, false
			}
			switch v[i] {
			case ',':
				i++
			case ']':
				return i + 1, true
			default:
				return i, false
			}
		}
	case c == '"':
		return scanString(v, i)
	case c == '-' || '0' <= c && c <= '9':
		return scanNumber(v, i)
	case c == 't':
		return scanLiteral(v, i, "true")
	case c == 'f':
		return scanLiteral(v, i, "false")
	case c == 'n':
		return scanLiteral(v, i, "null")
	}
	return i, false
}

func scanLiteral(v []byte, i int, lit string) (int, bool) {
	if len(v)-i >= len(lit) && string(v[i:i+len(lit)]) == lit {
		return i + len(lit), true
	}
	return i, false
}

// scanString scans the string at v[i] (a quote), returning the index after
// its closing quote. It accepts only the canonical escapes: \" \\ \b \f \n
// \r \t, and \u00xx in lower case for the other control characters.
func scanString(v []byte, i int) (int, bool) {
	for i++; i < len(v); {
		c := v[i]
		switch escapes[c] {
		case 0:
			i++
			continue
		case 2:
			r, size := utf8.DecodeRune(v[i:])
			if r == utf8.RuneError && size == 1 {
				return i, false
			}
			i += size
			continue
		}
		switch {
		case c == '"':
			return i + 1, true
		case c != '\\' || i+1 >= len(v):
			return i, false // a raw control character, or the end
		}
		switch v[i+1] {
		case '"', '\\', 'b', 'f', 'n', 'r', 't':
			i += 2
			continue
		case 'u':
			if i+6 > len(v) || v[i+2] != '0' || v[i+3] != '0' || (v[i+4] != '0' && v[i+4] != '1') {
				return i, false
			}
			switch d := v[i+5]; {
			case d == '8' || d == '9' || d == 'a' || d == 'c' || d == 'd':
				if v[i+4] == '0' {
					return i, false // \b \t \n \f \r have shorter forms
				}
			case '0' <= d && d <= '9' || 'a' <= d && d <= 'f':
			default:
				return i, false
			}
			i += 6
			continue
		}
		return i, false
	}
	return i, false
}

// scanNumber scans a number as RFC 8259 writes it; the library copies
// every valid number as it is.
func scanNumber(v []byte, i int) (int, bool) {
	digits := func(i int) int {
		for i < len(v) && '0' <= v[i] && v[i] <= '9' {
			i++
		}
		return i
	}
	if v[i] == '-' {
		i++
	}
	switch {
	case i >= len(v):
		return i, false
	case v[i] == '0':
		i++
	case '1' <= v[i] && v[i] <= '9':
		i = digits(i + 1)
	default:
		return i, false
	}
	if i < len(v) && v[i] == '.' {
		j := digits(i + 1)
		if j == i+1 {
			return i, false
		}
		i = j
	}
	if i < len(v) && (v[i] == 'e' || v[i] == 'E') {
		i++
		if i < len(v) && (v[i] == '+' || v[i] == '-') {
			i++
		}
		j := digits(i)
		if j == i {
			return i, false
		}
		i = j
	}
	return i, true
}
