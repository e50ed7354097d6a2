// Package mask keeps secrets out of the decision log: it masks the values
// an operator names by JSON pointer in the logged copy of a request, and
// refuses requests that carry a raw token (a JWT or bearer token) or another
// secret a secret scanner would flag (secret.go).
package mask

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/agentpdp/agentpdp/pdp/wire"
)

// Action is what masking does to a value.
type Action string

const (
	HMAC   Action = "hmac"   // replace with HMAC-SHA256 of its JSON: equal values stay linkable
	Remove Action = "remove" // drop it
)

// maskPointer is a compiled JSON pointer (RFC 6901) into a request, with "*"
// matching every element or key at its level.
type maskPointer struct {
	raw  string
	segs []string
}

// stringFields are the request's plain string fields that may be masked.
var stringFields = map[string]bool{"prompt": true, "on_behalf_of": true, "session_id": true, "task_id": true, "tool_call_id": true, "trace_id": true}

// compileMask checks that a pointer names something masking can replace
// without changing the request's shape: a place in context or in an inline
// entity's attrs or tags, a string field, or a credential string.
func compileMask(ptr string) (maskPointer, error) {
	if !strings.HasPrefix(ptr, "/") {
		return maskPointer{}, fmt.Errorf("mask %q: a JSON pointer starts with /", ptr)
	}
	segs := strings.Split(ptr[1:], "/")
	for i, s := range segs {
		segs[i] = strings.NewReplacer("~1", "/", "~0", "~").Replace(s)
	}
	ok := false
	switch segs[0] {
	case "context":
		ok = len(segs) >= 2
	case "entities":
		ok = len(segs) >= 4 && (segs[1] == "*" || isIndex(segs[1])) && (segs[2] == "attrs" || segs[2] == "tags")
	case "credential":
		ok = len(segs) == 2 && (segs[1] == "id" || segs[1] == "issuer" || segs[1] == "subject") ||
			len(segs) == 3 && segs[1] == "scopes" && (segs[2] == "*" || isIndex(segs[2]))
	default:
		ok = len(segs) == 1 && stringFields[segs[0]]
	}
	if !ok {
		return maskPointer{}, fmt.Errorf("mask %q: want a pointer into /context, /entities/N/attrs, /entities/N/tags, a string field (/prompt, /on_behalf_of, …) or /credential/id|issuer|subject|scopes", ptr)
	}
	return maskPointer{raw: ptr, segs: segs}, nil
}

// New compiles the pointers (RFC 6901, "*" matching every element or key)
// into a masker that applies action, keyed by key for HMAC.
func New(pointers []string, action Action, key []byte) (*Masker, error) {
	if action == "" {
		action = HMAC
	}
	if action != HMAC && action != Remove {
		return nil, fmt.Errorf("mask action %q: want hmac or remove", action)
	}
	m := &Masker{action: action, key: key}
	for _, ptr := range pointers {
		mp, err := compileMask(ptr)
		if err != nil {
			return nil, err
		}
		m.pointers = append(m.pointers, mp)
	}
	return m, nil
}

func isIndex(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil
}

// Masker replaces values in the logged copy of a request.
type Masker struct {
	pointers []maskPointer
	action   Action
	key      []byte
}

// removed stands for a value masked with Remove where free text quoted it.
const removed = "[masked]"

// Redaction replaces, in free text such as a Cedar error message, every
// string a request's masking replaced, so that a message quoting a masked
// value stores its mask instead. The zero value (and nil) redacts nothing.
type Redaction struct {
	olds map[string]string // masked string → what the log holds instead
	r    *strings.Replacer
}

// note records that s was masked and replaced by with.
func (r *Redaction) note(s, with string) {
	if s == "" {
		return
	}
	if r.olds == nil {
		r.olds = map[string]string{}
	}
	// Messages quote values raw, Go-quoted (%q) or JSON-escaped: each form
	// is replaced.
	r.olds[s] = with
	q := strconv.Quote(s)
	r.olds[q[1:len(q)-1]] = with
	if j, err := json.Marshal(s); err == nil {
		r.olds[string(j[1:len(j)-1])] = with
	}
}

// noteAll records every string inside v (a decoded JSON value masked as a
// whole), each replaced by its own mask.
func (r *Redaction) noteAll(m *Masker, v any) {
	switch v := v.(type) {
	case string:
		r.note(v, m.textFor(v))
	case []any:
		for _, e := range v {
			r.noteAll(m, e)
		}
	case map[string]any:
		for _, e := range v {
			r.noteAll(m, e)
		}
	}
}

// Merge returns r with the strings o masked added (r or o may be nil; r
// is changed in place when it is not).
func (r *Redaction) Merge(o *Redaction) *Redaction {
	if o == nil || len(o.olds) == 0 {
		return r
	}
	if r == nil {
		return o
	}
	if r.olds == nil {
		r.olds = map[string]string{}
	}
	maps.Copy(r.olds, o.olds)
	r.r = nil
	return r
}

// Redact returns s with every masked value it quotes replaced by its mask.
func (r *Redaction) Redact(s string) string {
	if r == nil || len(r.olds) == 0 {
		return s
	}
	if r.r == nil {
		// Longest first: a masked value that holds another is replaced whole.
		olds := make([]string, 0, len(r.olds))
		for o := range r.olds {
			olds = append(olds, o)
		}
		sort.Slice(olds, func(i, j int) bool {
			if len(olds[i]) != len(olds[j]) {
				return len(olds[i]) > len(olds[j])
			}
			return olds[i] < olds[j]
		})
		pairs := make([]string, 0, 2*len(olds))
		for _, o := range olds {
			pairs = append(pairs, o, r.olds[o])
		}
		r.r = strings.NewReplacer(pairs...)
	}
	return r.r.Replace(s)
}

// textFor is what free text shows instead of the masked string s.
func (m *Masker) textFor(s string) string {
	if r, keep := m.replacement(s); keep {
		return r.(string)
	}
	return removed
}

func (m *Masker) replacement(v any) (any, bool) {
	if m.action == Remove {
		return nil, false
	}
	b, _ := json.Marshal(v) // decoded JSON always marshals
	mac := hmac.New(sha256.New, m.key)
	mac.Write(b)
	return "hmac-sha256:" + hex.EncodeToString(mac.Sum(nil)), true
}

// Apply masks req (the logged copy) in place and returns the pointers that
// matched something and the redaction of the strings it masked (for
// messages that quote them).
func (m *Masker) Apply(req *wire.Request) ([]string, *Redaction, error) {
	var masked []string
	red := &Redaction{}
	for _, p := range m.pointers {
		hit := false
		var err error
		switch p.segs[0] {
		case "context":
			req.Context, hit, err = m.inRaw(req.Context, p.segs[1:], red)
		case "entities":
			for i := range req.Entities {
				if p.segs[1] != "*" && p.segs[1] != strconv.Itoa(i) {
					continue
				}
				e := &req.Entities[i]
				raw := &e.Attrs
				if p.segs[2] == "tags" {
					raw = &e.Tags
				}
				var h bool
				if *raw, h, err = m.inRaw(*raw, p.segs[3:], red); err != nil {
					return nil, nil, err
				}
				hit = hit || h
			}
		case "credential":
			if c := req.Credential; c != nil {
				switch p.segs[1] {
				case "id":
					hit = m.inString(&c.ID, red)
				case "issuer":
					hit = m.inString(&c.Issuer, red)
				case "subject":
					hit = m.inString(&c.Subject, red)
				case "scopes":
					var kept []string
					for i, s := range c.Scopes {
						if p.segs[2] == "*" || p.segs[2] == strconv.Itoa(i) {
							hit = true
							red.note(s, m.textFor(s))
							if r, keep := m.replacement(s); keep {
								kept = append(kept, r.(string))
							}
							continue
						}
						kept = append(kept, s)
					}
					c.Scopes = kept
				}
			}
		default:
			hit = m.inString(stringField(req, p.segs[0]), red)
		}
		if err != nil {
			return nil, nil, err
		}
		if hit {
			masked = append(masked, p.raw)
		}
	}
	return masked, red, nil
}

func stringField(req *wire.Request, name string) *string {
	switch name {
	case "prompt":
		return &req.Prompt
	case "on_behalf_of":
		return &req.OnBehalfOf
	case "session_id":
		return &req.SessionID
	case "task_id":
		return &req.TaskID
	case "tool_call_id":
		return &req.ToolCallID
	}
	return &req.TraceID
}

func (m *Masker) inString(s *string, red *Redaction) bool {
	if *s == "" {
		return false
	}
	red.note(*s, m.textFor(*s))
	r, keep := m.replacement(*s)
	if keep {
		*s = r.(string)
	} else {
		*s = ""
	}
	return true
}

// inRaw masks inside normalised JSON, re-encoding it canonically.
func (m *Masker) inRaw(raw json.RawMessage, segs []string, red *Redaction) (json.RawMessage, bool, error) {
	if len(raw) == 0 {
		return raw, false, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, false, fmt.Errorf("mask: %w", err)
	}
	tree, hit := m.walk(tree, segs, red)
	if !hit {
		return raw, false, nil
	}
	out, err := json.Marshal(tree) // maps marshal with sorted keys: still canonical
	return out, true, err
}

func (m *Masker) walk(v any, segs []string, red *Redaction) (any, bool) {
	if len(segs) == 0 {
		red.noteAll(m, v)
		r, _ := m.replacement(v)
		return r, true
	}
	seg, rest := segs[0], segs[1:]
	switch v := v.(type) {
	case map[string]any:
		keys := []string{seg}
		if seg == "*" {
			keys = keys[:0]
			for k := range v {
				keys = append(keys, k)
			}
			sort.Strings(keys)
		}
		hit := false
		for _, k := range keys {
			child, ok := v[k]
			if !ok {
				continue
			}
			nv, h := m.walk(child, rest, red)
			if !h {
				continue
			}
			hit = true
			if len(rest) == 0 && m.action == Remove {
				delete(v, k)
			} else {
				v[k] = nv
			}
		}
		return v, hit
	case []any:
		hit := false
		out := v[:0:0]
		for i, child := range v {
			if seg != "*" && seg != strconv.Itoa(i) {
				out = append(out, child)
				continue
			}
			nv, h := m.walk(child, rest, red)
			hit = hit || h
			if h && len(rest) == 0 && m.action == Remove {
				continue
			}
			out = append(out, nv)
		}
		return out, hit
	}
	return v, false
}

// jwtToken finds a JWT (or JWS/JWE compact form) anywhere in a string: a
// JSON header base64-encoded starts "eyJ" ({"), and two dot-separated
// segments follow. The segments may be base64url or standard base64 with
// padding, so a token re-encoded either way is found, and it may sit
// inside a longer string (token=…, a URL query, JSON in a string, after a
// zero-width space).
var jwtToken = regexp.MustCompile(`eyJ[A-Za-z0-9_+/-]{8,}={0,2}\.[A-Za-z0-9_+/-]{8,}={0,2}\.`)

// bearerToken finds a bearer credential: a string that starts with
// "bearer" and a space or colon (Bearer abc, Bearer:abc, Bearer a b), or
// "bearer" followed by an RFC 6750 token68 of 16 or more characters
// anywhere (Authorization: Bearer … inside a longer string).
// Spaces are any Unicode space (\p{Z}: a no-break space from a pasted
// header) and the vertical tab, beside \s (ASCII only in RE2).
var bearerToken = regexp.MustCompile(`(?i)^bearer[\s\v\p{Z}:]|\bbearer[\s\v\p{Z}:]+[A-Za-z0-9._~+/-]{16,}`)

// ErrRawToken is why a string that looks like a raw token is refused.
var ErrRawToken = errors.New("looks like a raw token (a JWT or bearer token); send the credential's claims (id, issuer, subject, scopes, expiry), never the token")

// CheckRequest refuses a request that carries a raw token or a secret
// (Token) in any string field it names; prefix is the request's place in a
// batch, or "".
func CheckRequest(prefix string, r *wire.Request) error {
	return CheckRequestWith(prefix, r, Token)
}

// CheckRequestWith is CheckRequest with the check of one string: Token, or
// RawToken where masking may still replace a secret (see CheckLogged).
func CheckRequestWith(prefix string, r *wire.Request, check func(string) error) error {
	// A raw token must never reach the log, whatever field it is sent in.
	// Each value is checked in the order below, and the first refused is
	// named; a field's name is made only then, so that a request without a
	// token costs no allocation.
	type field struct{ name, value string }
	checkAll := func(fs []field) error {
		for _, f := range fs {
			if err := check(f.value); err != nil {
				return wire.BadRequest(wire.JoinField(prefix, f.name), err)
			}
		}
		return nil
	}
	if err := checkAll([]field{
		{"/principal/type", r.Principal.Type}, {"/principal/id", r.Principal.ID},
		{"/action/type", r.Action.Type}, {"/action/id", r.Action.ID},
		{"/resource/type", r.Resource.Type}, {"/resource/id", r.Resource.ID},
		{"/session_id", r.SessionID}, {"/task_id", r.TaskID}, {"/trace_id", r.TraceID},
		{"/parent_decision_id", r.ParentDecisionID}, {"/tool_call_id", r.ToolCallID},
		{"/on_behalf_of", r.OnBehalfOf}, {"/prompt", r.Prompt}, {"/approval", r.Approval},
	}); err != nil {
		return err
	}
	if c := r.Credential; c != nil {
		if err := checkAll([]field{{"/credential/id", c.ID}, {"/credential/issuer", c.Issuer}, {"/credential/subject", c.Subject}}); err != nil {
			return err
		}
		for i, s := range c.Scopes {
			if err := check(s); err != nil {
				return wire.BadRequest(wire.JoinField(prefix, fmt.Sprintf("/credential/scopes/%d", i)), err)
			}
		}
	}
	// Inline entities' uids and parents are stored in the row too (their
	// attributes and tags are checked as they are normalised).
	for i, ent := range r.Entities {
		for _, f := range [...]field{{"/uid/type", ent.UID.Type}, {"/uid/id", ent.UID.ID}} {
			if err := check(f.value); err != nil {
				return wire.BadRequest(wire.JoinField(prefix, fmt.Sprintf("/entities/%d%s", i, f.name)), err)
			}
		}
		for j, p := range ent.Parents {
			for _, f := range [...]field{{"/type", p.Type}, {"/id", p.ID}} {
				if err := check(f.value); err != nil {
					return wire.BadRequest(wire.JoinField(prefix, fmt.Sprintf("/entities/%d/parents/%d%s", i, j, f.name)), err)
				}
			}
		}
	}
	return nil
}

// CheckToken refuses s if it looks like a raw token: a *wire.RequestError
// naming field.
func CheckToken(field, s string) error {
	if err := Token(s); err != nil {
		return wire.BadRequest(field, err)
	}
	return nil
}

// Token returns ErrRawToken if s looks like a raw token (a JWT or a bearer
// token), an error matching ErrSecret if it holds another secret (the
// rules are in secret.go), else nil. It is the check of every string a row
// stores, and runs on every string of every request.
func Token(s string) error { return scan(s, true) }

// RawToken returns ErrRawToken if s looks like a raw token (a JWT or a
// bearer token), else nil: Token without Secret's rules.
func RawToken(s string) error {
	if len(s) < 8 {
		return nil
	}
	// Most strings hold neither "eyJ" nor "bearer"; skip the regexps for them.
	jwt := strings.Contains(s, "eyJ")
	bearer := containsFold(s, "bearer")
	if !jwt && !bearer {
		return nil
	}
	if jwt && jwtToken.MatchString(s) {
		return ErrRawToken
	}
	if bearer {
		// Leading space and invisible format characters (a zero-width
		// space) do not make "Bearer x" something else.
		t := strings.TrimLeftFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.Is(unicode.Cf, r) })
		if bearerToken.MatchString(t) {
			return ErrRawToken
		}
	}
	return nil
}

// containsFold reports whether s contains the lower-case ASCII word sub,
// ignoring ASCII case.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i]|0x20 == sub[0] && strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// CheckJSON refuses raw tokens anywhere in a JSON value.
func CheckJSON(field string, raw json.RawMessage) error {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return wire.BadRequest(field, fmt.Errorf("malformed JSON: %w", err))
	}
	return walkStrings(field, v)
}

func walkStrings(field string, v any) error {
	switch v := v.(type) {
	case string:
		return CheckToken(field, v)
	case []any:
		for i, e := range v {
			if err := walkStrings(fmt.Sprintf("%s/%d", field, i), e); err != nil {
				return err
			}
		}
	case map[string]any:
		for k, e := range v {
			// A name is stored as much as its value is.
			if err := CheckToken(field+"/"+wire.PointerToken(k), k); err != nil {
				return err
			}
			if err := walkStrings(field+"/"+wire.PointerToken(k), e); err != nil {
				return err
			}
		}
	}
	return nil
}

// CheckLogged holds the logged (masked) copy of a request to Token: every
// string field, the context, and inline entities' attributes and tags. It
// is for a request that Token refused before masking: a secret at a place
// the mask config names is stored as its mask and passes; anywhere else it
// is refused, naming the place.
func CheckLogged(logged *wire.Request) error {
	if err := CheckRequest("", logged); err != nil {
		return err
	}
	if len(logged.Context) > 0 {
		if err := CheckJSON("/context", logged.Context); err != nil {
			return err
		}
	}
	for i, ent := range logged.Entities {
		for name, raw := range map[string]json.RawMessage{"attrs": ent.Attrs, "tags": ent.Tags} {
			if len(raw) > 0 {
				if err := CheckJSON(fmt.Sprintf("/entities/%d/%s", i, name), raw); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
