package wire

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"time"
)

// The decision record is encoded on every decision, and encoding/json's
// reflection was a fifteenth of the daemon's CPU. appendRecord writes the
// same bytes by hand, field by field in the struct's order with its
// omitempty rules; TestAppendRecord_SameAsEncodingJSON and
// FuzzAppendRecord hold it to json.Marshal. A field it cannot write as
// encoding/json would (a time outside years 0–9999, a raw message that is
// not compact and HTML-safe) falls back to json.Marshal for the whole
// record.

// MarshalRecord is json.Marshal(r), faster.
func MarshalRecord(r *DecisionRecord) ([]byte, error) {
	e := encoder{b: make([]byte, 0, 2048)}
	e.record(r)
	if e.failed {
		return json.Marshal(r)
	}
	return e.b, nil
}

// MarshalDecision is json.Marshal(d), faster.
func MarshalDecision(d *Decision) ([]byte, error) {
	e := encoder{b: make([]byte, 0, 512)}
	e.decision(d)
	if e.failed {
		return json.Marshal(d)
	}
	return e.b, nil
}

type encoder struct {
	b      []byte
	failed bool // something only encoding/json writes correctly
}

// key writes a member's name, with the comma before all but the first.
func (e *encoder) key(name string, first bool) {
	if !first {
		e.b = append(e.b, ',')
	}
	e.b = append(e.b, '"')
	e.b = append(e.b, name...)
	e.b = append(e.b, '"', ':')
}

func (e *encoder) str(s string) { e.b = appendJSONString(e.b, s) }

// optStr and optInt write a member that is not the first, unless its value
// is empty: omitempty.
func (e *encoder) optStr(name, v string) {
	if v != "" {
		e.key(name, false)
		e.str(v)
	}
}

func (e *encoder) optInt(name string, v int64) {
	if v != 0 {
		e.key(name, false)
		e.int(v)
	}
}

// array writes xs, or null for a nil slice as encoding/json does.
func array[T any](e *encoder, xs []T, elem func(*T)) {
	if xs == nil {
		e.b = append(e.b, "null"...)
		return
	}
	e.b = append(e.b, '[')
	for i := range xs {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		elem(&xs[i])
	}
	e.b = append(e.b, ']')
}

// appendJSONString appends s as encoding/json writes it, HTML-safe. Quotes
// and backslashes (Cedar's Type::"id" has two) are escaped here; control
// characters, <, >, & and anything not ASCII are left to encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

// raw writes a json.RawMessage. encoding/json compacts it and escapes <, >,
// & and U+2028/9; what the engine writes is already so, anything else is
// left to encoding/json.
func (e *encoder) raw(m json.RawMessage) {
	if len(m) == 0 {
		e.b = append(e.b, "null"...)
		return
	}
	if !compactAndSafe(m) {
		e.failed = true
		return
	}
	e.b = append(e.b, m...)
}

// compactAndSafe reports whether m is valid JSON with no space outside
// strings and nothing encoding/json would escape when copying it. What the
// engine writes passes; a string with escapes does not (fastDecoder leaves
// those to encoding/json), and costs only the slower encoding.
func compactAndSafe(m []byte) bool {
	if bytes.ContainsAny(m, "<>&") || bytes.Contains(m, []byte("\u2028")) || bytes.Contains(m, []byte("\u2029")) {
		return false
	}
	in := false
	for _, c := range m {
		switch {
		case c == '"':
			in = !in // no escapes: fastDecoder below refuses them
		case !in && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return false
		}
	}
	d := fastDecoder{b: m}
	return d.skip(0) && d.i == len(m)
}

func (e *encoder) ref(r EntityRef) {
	e.b = append(e.b, `{"type":`...)
	e.str(r.Type)
	e.b = append(e.b, `,"id":`...)
	e.str(r.ID)
	e.b = append(e.b, '}')
}

func (e *encoder) refs(rs []EntityRef) { array(e, rs, func(r *EntityRef) { e.ref(*r) }) }

func (e *encoder) strings(ss []string) { array(e, ss, func(s *string) { e.str(*s) }) }

func (e *encoder) int(n int64) { e.b = strconv.AppendInt(e.b, n, 10) }

func (e *encoder) time(t time.Time) {
	if y := t.Year(); y < 0 || y > 9999 {
		e.failed = true // time.Time.MarshalJSON refuses it
		return
	}
	e.b = append(e.b, '"')
	e.b = t.AppendFormat(e.b, time.RFC3339Nano)
	e.b = append(e.b, '"')
}

func (e *encoder) reasons(rs []Reason) {
	array(e, rs, func(r *Reason) {
		e.b = append(e.b, '{')
		e.key("policy", true)
		e.str(r.Policy)
		e.key("effect", false)
		e.str(r.Effect)
		e.optStr("file", r.File)
		e.optInt("line", int64(r.Line))
		if len(r.Annotations) > 0 {
			e.key("annotations", false)
			e.annotations(r.Annotations)
		}
		if r.Builtin {
			e.key("builtin", false)
			e.b = append(e.b, "true"...)
		}
		e.optStr("detail", r.Detail)
		e.b = append(e.b, '}')
	})
}

func (e *encoder) annotations(m map[string]string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	e.b = append(e.b, '{')
	for i, k := range keys {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		e.str(k)
		e.b = append(e.b, ':')
		e.str(m[k])
	}
	e.b = append(e.b, '}')
}

func (e *encoder) evalErrors(es []EvalError) {
	array(e, es, func(x *EvalError) {
		e.b = append(e.b, '{')
		e.key("policy", true)
		e.str(x.Policy)
		e.optStr("effect", x.Effect)
		e.optStr("file", x.File)
		e.optInt("line", int64(x.Line))
		e.key("message", false)
		e.str(x.Message)
		e.b = append(e.b, '}')
	})
}

func (e *encoder) entities(es []Entity) {
	array(e, es, func(x *Entity) {
		e.b = append(e.b, '{')
		e.key("uid", true)
		e.ref(x.UID)
		if len(x.Attrs) > 0 {
			e.key("attrs", false)
			e.raw(x.Attrs)
		}
		if len(x.Parents) > 0 {
			e.key("parents", false)
			e.refs(x.Parents)
		}
		if len(x.Tags) > 0 {
			e.key("tags", false)
			e.raw(x.Tags)
		}
		e.b = append(e.b, '}')
	})
}

func (e *encoder) request(r *Request) {
	if r == nil {
		e.b = append(e.b, "null"...)
		return
	}
	e.b = append(e.b, '{')
	e.key("principal", true)
	e.ref(r.Principal)
	e.key("action", false)
	e.ref(r.Action)
	e.key("resource", false)
	e.ref(r.Resource)
	if len(r.Context) > 0 {
		e.key("context", false)
		e.raw(r.Context)
	}
	if len(r.Entities) > 0 {
		e.key("entities", false)
		e.entities(r.Entities)
	}
	e.optStr("session_id", r.SessionID)
	e.optStr("task_id", r.TaskID)
	e.optStr("trace_id", r.TraceID)
	e.optStr("parent_decision_id", r.ParentDecisionID)
	e.optStr("tool_call_id", r.ToolCallID)
	e.optStr("on_behalf_of", r.OnBehalfOf)
	e.optStr("prompt", r.Prompt)
	if c := r.Credential; c != nil {
		e.key("credential", false)
		e.credential(c)
	}
	e.optStr("approval", r.Approval)
	e.b = append(e.b, '}')
}

func (e *encoder) credential(c *Credential) {
	e.b = append(e.b, '{')
	first := true
	for _, f := range [...]struct{ name, v string }{{"id", c.ID}, {"issuer", c.Issuer}, {"subject", c.Subject}} {
		if f.v != "" {
			e.key(f.name, first)
			e.str(f.v)
			first = false
		}
	}
	if len(c.Scopes) > 0 {
		e.key("scopes", first)
		e.strings(c.Scopes)
		first = false
	}
	if c.IssuedAt != nil {
		e.key("issued_at", first)
		e.time(*c.IssuedAt)
		first = false
	}
	if c.ExpiresAt != nil {
		e.key("expires_at", first)
		e.time(*c.ExpiresAt)
	}
	e.b = append(e.b, '}')
}

func (e *encoder) record(r *DecisionRecord) {
	e.b = append(e.b, '{')
	e.key("decision_id", true)
	e.str(r.DecisionID)
	e.key("decision", false)
	e.str(r.Decision)
	e.key("principal", false)
	e.str(r.Principal)
	e.key("action", false)
	e.str(r.Action)
	e.key("resource", false)
	e.str(r.Resource)
	e.optStr("classification", r.Classification)
	e.key("reasons", false)
	e.reasons(r.Reasons)
	e.key("errors", false)
	e.evalErrors(r.Errors)
	e.key("policy_version", false)
	e.str(r.PolicyVersion)
	e.key("on_error", false)
	e.str(string(r.OnError))
	if a := r.Approval; a != nil {
		e.key("approval", false)
		e.b = append(e.b, '{')
		e.key("id", true)
		e.str(a.ID)
		e.key("approver", false)
		e.str(a.Approver)
		e.b = append(e.b, '}')
	}
	e.key("context_digest", false)
	e.str(r.ContextDigest)
	e.key("request", false)
	e.request(r.Request)
	if len(r.Masked) > 0 {
		e.key("masked", false)
		e.strings(r.Masked)
	}
	if len(r.Provided) > 0 {
		e.key("provided_entities", false)
		e.entities(r.Provided)
	}
	if len(r.LogOnly) > 0 {
		e.key("log_only", false)
		e.reasons(r.LogOnly)
	}
	if s := r.Shadow; s != nil {
		e.key("shadow", false)
		e.b = append(e.b, '{')
		e.key("decision", true)
		e.str(s.Decision)
		e.key("reasons", false)
		e.reasons(s.Reasons)
		if len(s.Errors) > 0 {
			e.key("errors", false)
			e.evalErrors(s.Errors)
		}
		e.key("policy_version", false)
		e.str(s.PolicyVersion)
		e.b = append(e.b, '}')
	}
	if p := r.Peer; p != nil {
		e.key("peer", false)
		e.b = append(e.b, '{')
		e.key("pid", true)
		e.int(int64(p.PID))
		e.key("uid", false)
		e.int(int64(p.UID))
		e.key("gid", false)
		e.int(int64(p.GID))
		e.optStr("exe", p.Exe)
		e.b = append(e.b, '}')
	}
	e.key("eval_ns", false)
	e.int(r.EvalNanos)
	e.b = append(e.b, '}')
}

func (e *encoder) decision(d *Decision) {
	e.b = append(e.b, '{')
	first := true
	if d.DecisionID != "" {
		e.key("decision_id", true)
		e.str(d.DecisionID)
		first = false
	}
	e.key("decision", first)
	e.str(d.Decision)
	e.key("reasons", false)
	e.reasons(d.Reasons)
	e.key("errors", false)
	e.evalErrors(d.Errors)
	e.key("policy_version", false)
	e.str(d.PolicyVersion)
	e.optInt("seq", d.Seq)
	e.b = append(e.b, '}')
}
