// Package wire holds agentpdp's wire types and their one strict JSON
// reading: the requests the daemon takes (authorize, batch, outcome,
// approval), the decisions it answers, and the records the decision log
// keeps, shared with clients. It has no cgo and imports nothing heavy, so
// the Go client, the MCP proxy and the plugin SDK build without the daemon.
//
// Every input is read once, by github.com/go-json-experiment/json (the
// upstream of Go's encoding/json/v2), with the rules of [Reader]: names are
// case-sensitive, a name may not appear twice in an object, strings must be
// valid UTF-8, unknown fields are errors, and nesting is limited while
// decoding. What is checked is exactly what runs.
package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/cedar-policy/cedar-go/types"
)

// EntityRef names a Cedar entity. On the wire it is either an object,
// {"type":"Agent","id":"billing-bot"}, or the Cedar string Agent::"billing-bot".
// It is always written back as the object form.
type EntityRef struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// ParseEntityRef parses the Cedar form of an entity reference, Agent::"billing-bot".
//
// The plain form (identifiers, an id of printable ASCII without quote or
// backslash, no space or comment between tokens) is read here; anything
// else by cedar-go's parser, which decides what it means and whether it
// is refused. FuzzParseEntityRefMatchesLibrary holds the two together.
func ParseEntityRef(s string) (EntityRef, error) {
	if r, ok := parsePlainEntityRef(s); ok {
		return r, nil
	}
	return parseEntityRefCedar(s)
}

// parseEntityRefCedar is ParseEntityRef by cedar-go's parser alone.
func parseEntityRefCedar(s string) (EntityRef, error) {
	var uid types.EntityUID
	if err := uid.UnmarshalCedar([]byte(s)); err != nil {
		return EntityRef{}, fmt.Errorf("entity reference %q: want Type::\"id\"", s)
	}
	return EntityRef{Type: string(uid.Type), ID: string(uid.ID)}, nil
}

// parsePlainEntityRef reads Type::"id" when the type is identifiers (none
// a reserved keyword) joined by :: and the id is printable ASCII without a
// quote or a backslash: there, cedar-go's tokens are exactly these bytes.
func parsePlainEntityRef(s string) (EntityRef, bool) {
	q := strings.IndexByte(s, '"')
	if q < 3 || s[q-2:q] != "::" || len(s) < q+2 || s[len(s)-1] != '"' {
		return EntityRef{}, false
	}
	typ, id := s[:q-2], s[q+1:len(s)-1]
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return EntityRef{}, false
		}
	}
	for seg := range strings.SplitSeq(typ, "::") {
		if !plainIdent(seg) {
			return EntityRef{}, false
		}
	}
	return EntityRef{Type: typ, ID: id}, true
}

// plainIdent reports whether s is a Cedar identifier that is not a
// reserved keyword (cedar-go's scanner.IsIdent).
func plainIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	switch s {
	case "true", "false", "if", "then", "else", "in", "like", "has", "is", "__cedar":
		return false
	}
	return true
}

// UnmarshalJSONFrom reads both wire forms, and Cedar's {"__entity":{…}}
// escape, under the reading's rules (it is called by [Reader]'s decoder).
func (r *EntityRef) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	switch dec.PeekKind() {
	case 'n':
		_, err := dec.ReadToken()
		*r = EntityRef{}
		return err
	case '"':
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		ref, err := ParseEntityRef(tok.String())
		if err != nil {
			return err
		}
		*r = ref
		return nil
	case '{':
		return r.readObject(dec, true)
	}
	v, err := dec.ReadValue()
	if err != nil {
		return err
	}
	return fmt.Errorf(`want {"type":…,"id":…} or Type::"id", got %s`, truncate(v, 40))
}

// readObject reads {"type":…,"id":…}, or (if escape) Cedar's
// {"__entity":{"type":…,"id":…}}, token by token: the decoder holds the
// reading's rules (no duplicate names, valid UTF-8), this the members.
// Its errors name the decoder's own JSON pointer.
func (r *EntityRef) readObject(dec *jsontext.Decoder, escape bool) error {
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	var typ, id string
	var haveType, haveID bool
	for first := true; dec.PeekKind() != '}'; first = false {
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		name := tok.String()
		if name == "__entity" && escape && first {
			if dec.PeekKind() != '{' {
				return BadRequest(string(dec.StackPointer()), errors.New(`want {"type":…,"id":…}`))
			}
			if err := r.readObject(dec, false); err != nil {
				return err
			}
			if dec.PeekKind() != '}' {
				return errors.New(`want {"__entity":{"type":…,"id":…}} alone`)
			}
			_, err := dec.ReadToken()
			return err
		}
		var dst *string
		switch name {
		case "type":
			dst, haveType = &typ, true
		case "id":
			dst, haveID = &id, true
		default:
			return BadRequest(string(dec.StackPointer()), errors.New("unknown field (names are case-sensitive)"))
		}
		if k := dec.PeekKind(); k != '"' {
			if _, err := dec.ReadValue(); err != nil {
				return err
			}
			return BadRequest(string(dec.StackPointer()), fmt.Errorf("want a string, got %s", kindName(k)))
		}
		v, err := dec.ReadToken()
		if err != nil {
			return err
		}
		*dst = v.String()
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	if !haveType || !haveID {
		return errors.New(`want {"type":…,"id":…}: both are required`)
	}
	if _, err := types.NewEntityType(typ); err != nil {
		return BadRequest(string(dec.StackPointer())+"/type", fmt.Errorf("%q is not a Cedar entity type", typ))
	}
	*r = EntityRef{Type: typ, ID: id}
	return nil
}

// UnmarshalJSON reads one reference with the reading's rules, for callers
// of encoding/json.
func (r *EntityRef) UnmarshalJSON(b []byte) error {
	return Reader{}.unmarshal(b, r, 0)
}

// UID is the reference as a Cedar value.
func (r EntityRef) UID() types.EntityUID {
	return types.NewEntityUID(types.EntityType(r.Type), types.String(r.ID))
}

// String is the Cedar form, Agent::"billing-bot".
func (r EntityRef) String() string { return r.UID().String() }

// IsZero reports whether the reference is unset.
func (r EntityRef) IsZero() bool { return r.Type == "" && r.ID == "" }

// Entity is a Cedar entity supplied with a request, in Cedar's JSON entity
// format except that references may also be Cedar strings.
type Entity struct {
	UID     EntityRef       `json:"uid"`
	Attrs   json.RawMessage `json:"attrs,omitempty"`
	Parents []EntityRef     `json:"parents,omitempty"`
	Tags    json.RawMessage `json:"tags,omitempty"`
}

// Credential binds a decision to the credential the agent presented. It holds
// the claims that identify the credential, never the token itself.
type Credential struct {
	ID        string     `json:"id,omitempty"`
	Issuer    string     `json:"issuer,omitempty"`
	Subject   string     `json:"subject,omitempty"`
	Scopes    []string   `json:"scopes,omitempty"`
	IssuedAt  *time.Time `json:"issued_at,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// Request is one authorization request, as DESIGN.md's wire API defines it.
// Principal, Action and Resource are required; everything else is optional
// audit context that is recorded with the decision.
type Request struct {
	Principal EntityRef       `json:"principal"`
	Action    EntityRef       `json:"action"`
	Resource  EntityRef       `json:"resource"`
	Context   json.RawMessage `json:"context,omitempty"`
	Entities  []Entity        `json:"entities,omitempty"`

	SessionID        string      `json:"session_id,omitempty"`
	TaskID           string      `json:"task_id,omitempty"`
	TraceID          string      `json:"trace_id,omitempty"`
	ParentDecisionID string      `json:"parent_decision_id,omitempty"`
	ToolCallID       string      `json:"tool_call_id,omitempty"`
	OnBehalfOf       string      `json:"on_behalf_of,omitempty"`
	Prompt           string      `json:"prompt,omitempty"`
	Credential       *Credential `json:"credential,omitempty"`
	Approval         string      `json:"approval,omitempty"`
	// Token is a bearer token for clients that cannot set the
	// Authorization header. The engine verifies it and logs only its
	// SHA-256 thumbprint; it is never part of the record.
	Token string `json:"token,omitempty"`
}

// requestFields is Request without its methods, for the decoder.
type requestFields Request

// UnmarshalJSON reads a request as [DecodeRequest] does, for callers of
// encoding/json.
func (r *Request) UnmarshalJSON(b []byte) error {
	req, err := DecodeRequest(b)
	if err != nil {
		return err
	}
	*r = *req
	return nil
}

// validate checks what the types cannot: the required references, and
// that the context is an object. prefix is the request's JSON pointer in
// its body ("" or /requests/N).
func (r *Request) validate(prefix string) error {
	for _, f := range []struct {
		name string
		ref  EntityRef
	}{{"principal", r.Principal}, {"action", r.Action}, {"resource", r.Resource}} {
		if f.ref.IsZero() {
			return BadRequest(prefix+"/"+f.name, errors.New("required"))
		}
		if f.ref.Type == "" {
			return BadRequest(prefix+"/"+f.name+"/type", errors.New("required"))
		}
	}
	if len(r.Context) > 0 && r.Context[0] != '{' && string(r.Context) != "null" {
		return BadRequest(prefix+"/context", fmt.Errorf("want a JSON object, got %s", truncate(r.Context, 40)))
	}
	for i, e := range r.Entities {
		if e.UID.Type == "" {
			return BadRequest(prefix+"/entities/"+strconv.Itoa(i)+"/uid", errors.New("required"))
		}
		for j, p := range e.Parents {
			if p.IsZero() {
				return BadRequest(fmt.Sprintf("%s/entities/%d/parents/%d", prefix, i, j), errors.New("null is not an entity reference"))
			}
		}
	}
	return nil
}

// RequestError is bad input: the caller sent something that cannot be
// evaluated. It is answered with HTTP 400 and never logged as a decision.
type RequestError struct {
	// Field is the JSON pointer (RFC 6901) of the offending value in the
	// body, such as /entities/0/uid or /context/ticket; "" for the whole
	// body.
	Field string
	Err   error
}

func (e *RequestError) Error() string {
	if e.Field == "" {
		return e.Err.Error()
	}
	return e.Field + ": " + e.Err.Error()
}

func (e *RequestError) Unwrap() error { return e.Err }

// BadRequest wraps err as a [RequestError] for the value at JSON pointer field.
func BadRequest(field string, err error) *RequestError {
	return &RequestError{Field: field, Err: err}
}

// JoinField puts the JSON pointer prefix before field: /requests/0 and
// /principal make /requests/0/principal.
func JoinField(prefix, field string) string { return prefix + field }

// PointerToken escapes a name for a JSON pointer (RFC 6901: ~ is ~0, / is ~1).
func PointerToken(name string) string {
	if !strings.ContainsAny(name, "~/") {
		return name
	}
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(name)
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…"
}
