// Package wire holds agentpdp's wire types and their JSON codec: the
// requests the daemon takes (authorize, batch, outcome, approval), the
// decisions it answers, and the records the decision log keeps, shared with
// clients. It has no cgo and imports nothing heavy, so the Go client, the
// MCP proxy and the plugin SDK build without the daemon.
package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

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
func ParseEntityRef(s string) (EntityRef, error) {
	var uid types.EntityUID
	if err := uid.UnmarshalCedar([]byte(s)); err != nil {
		return EntityRef{}, fmt.Errorf("entity reference %q: want Type::\"id\"", s)
	}
	return EntityRef{Type: string(uid.Type), ID: string(uid.ID)}, nil
}

// UnmarshalJSON accepts both wire forms, and Cedar's {"__entity":{…}} escape.
func (r *EntityRef) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		ref, err := ParseEntityRef(s)
		if err != nil {
			return err
		}
		*r = ref
		return nil
	}
	if len(b) == 0 || b[0] != '{' {
		return fmt.Errorf("want {\"type\":…,\"id\":…} or Type::\"id\", got %s", truncate(b, 40))
	}
	type typeID struct {
		Type *string `json:"type"`
		ID   *string `json:"id"`
	}
	var obj struct {
		typeID
		Entity *typeID `json:"__entity"`
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return BadRequest(strings.TrimPrefix(te.Field, "typeID."), errors.New("want a string"))
		}
		return err
	}
	if obj.Entity != nil {
		obj.typeID = *obj.Entity
	}
	if obj.Type == nil || obj.ID == nil {
		return fmt.Errorf("want {\"type\":…,\"id\":…}, got %s", truncate(b, 80))
	}
	if _, err := types.NewEntityType(*obj.Type); err != nil {
		return BadRequest("type", fmt.Errorf("%q is not a Cedar entity type", *obj.Type))
	}
	*r = EntityRef{Type: *obj.Type, ID: *obj.ID}
	return nil
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
}

// UnmarshalJSON decodes strictly (unknown fields are errors) and names the
// field of any value it cannot read, including entity references and times,
// whose own errors carry no path.
func (r *Request) UnmarshalJSON(b []byte) error {
	if fast, ok := decodeFast(b); ok {
		*r = *fast
		return nil
	}
	return r.unmarshalStrict(b)
}

// strictRequest decodes with the strict decoder alone: DecodeRequest's way
// once decodeFast has declined, and the tests' reference for decodeFast.
type strictRequest Request

func (s *strictRequest) UnmarshalJSON(b []byte) error { return (*Request)(s).unmarshalStrict(b) }

func (r *Request) unmarshalStrict(b []byte) error {
	type plain Request // Request without its methods, so this is not recursive
	var aux struct {
		plain
		Principal  json.RawMessage   `json:"principal"`
		Action     json.RawMessage   `json:"action"`
		Resource   json.RawMessage   `json:"resource"`
		Entities   []json.RawMessage `json:"entities"`
		Credential json.RawMessage   `json:"credential"`
	}
	if err := DecodeStrict(b, &aux); err != nil {
		return err
	}
	*r = Request(aux.plain)
	var err error
	if r.Principal, err = decodeRef("principal", aux.Principal); err != nil {
		return err
	}
	if r.Action, err = decodeRef("action", aux.Action); err != nil {
		return err
	}
	if r.Resource, err = decodeRef("resource", aux.Resource); err != nil {
		return err
	}
	r.Entities = nil
	for i, raw := range aux.Entities {
		e, err := decodeEntity(fmt.Sprintf("entities[%d]", i), raw)
		if err != nil {
			return err
		}
		r.Entities = append(r.Entities, e)
	}
	if r.Credential, err = decodeCredential(aux.Credential); err != nil {
		return err
	}
	return nil
}

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

func decodeRef(field string, raw json.RawMessage) (EntityRef, error) {
	var ref EntityRef
	if isNull(raw) {
		return ref, nil // required-ness is checked by validate
	}
	if err := ref.UnmarshalJSON(raw); err != nil {
		return ref, prefixed(field, err)
	}
	return ref, nil
}

func decodeEntity(field string, raw json.RawMessage) (Entity, error) {
	var aux struct {
		UID     json.RawMessage   `json:"uid"`
		Attrs   json.RawMessage   `json:"attrs"`
		Parents []json.RawMessage `json:"parents"`
		Tags    json.RawMessage   `json:"tags"`
	}
	if err := DecodeStrict(raw, &aux); err != nil {
		return Entity{}, prefixed(field, err)
	}
	var e Entity
	var err error
	if e.UID, err = decodeRef(field+".uid", aux.UID); err != nil {
		return e, err
	}
	e.Attrs, e.Tags = aux.Attrs, aux.Tags
	for j, p := range aux.Parents {
		ref, err := decodeRef(fmt.Sprintf("%s.parents[%d]", field, j), p)
		if err != nil {
			return e, err
		}
		if ref.IsZero() {
			return e, BadRequest(fmt.Sprintf("%s.parents[%d]", field, j), errors.New("null is not an entity reference"))
		}
		e.Parents = append(e.Parents, ref)
	}
	return e, nil
}

func decodeCredential(raw json.RawMessage) (*Credential, error) {
	if isNull(raw) {
		return nil, nil
	}
	type credentialFields Credential
	var aux struct {
		credentialFields
		IssuedAt  json.RawMessage `json:"issued_at"`
		ExpiresAt json.RawMessage `json:"expires_at"`
	}
	if err := DecodeStrict(raw, &aux); err != nil {
		return nil, prefixed("credential", err)
	}
	c := Credential(aux.credentialFields)
	for _, t := range []struct {
		name string
		raw  json.RawMessage
		dst  **time.Time
	}{{"issued_at", aux.IssuedAt, &c.IssuedAt}, {"expires_at", aux.ExpiresAt, &c.ExpiresAt}} {
		*t.dst = nil
		if isNull(t.raw) {
			continue
		}
		var s string
		if err := json.Unmarshal(t.raw, &s); err != nil {
			return nil, BadRequest("credential."+t.name, fmt.Errorf("want an RFC 3339 time string, got %s", truncate(t.raw, 40)))
		}
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, BadRequest("credential."+t.name, fmt.Errorf("%q is not an RFC 3339 time", s))
		}
		*t.dst = &tm
	}
	return &c, nil
}

// prefixed puts prefix before the field a RequestError names.
func prefixed(prefix string, err error) error {
	var re *RequestError
	if errors.As(err, &re) {
		return BadRequest(JoinField(prefix, re.Field), re.Err)
	}
	return BadRequest(prefix, err)
}

// RequestError is bad input: the caller sent something that cannot be
// evaluated. It is answered with HTTP 400 and never logged as a decision.
type RequestError struct {
	Field string // JSON path of the offending field, "" for the whole body
	Err   error
}

func (e *RequestError) Error() string {
	if e.Field == "" {
		return e.Err.Error()
	}
	return e.Field + ": " + e.Err.Error()
}

func (e *RequestError) Unwrap() error { return e.Err }

// BadRequest wraps err as a [RequestError] for field.
func BadRequest(field string, err error) *RequestError {
	return &RequestError{Field: field, Err: err}
}

// DecodeRequest decodes one request strictly: unknown fields, wrong types,
// trailing data and unparsable entity references are errors that name the
// field. It checks that the required fields are present.
func DecodeRequest(b []byte) (*Request, error) {
	req, ok := decodeFast(b)
	if !ok {
		req = new(Request)
		if err := DecodeStrict(b, (*strictRequest)(req)); err != nil {
			return nil, err
		}
	}
	if err := req.validate(""); err != nil {
		return nil, err
	}
	return req, nil
}

// DecodeBatch decodes {"requests":[…]}, naming the index of a bad request.
func DecodeBatch(b []byte) ([]*Request, error) {
	var batch struct {
		Requests []json.RawMessage `json:"requests"`
	}
	if err := DecodeStrict(b, &batch); err != nil {
		return nil, err
	}
	if len(batch.Requests) == 0 {
		return nil, BadRequest("requests", errors.New("missing or empty"))
	}
	reqs := make([]*Request, len(batch.Requests))
	for i, raw := range batch.Requests {
		prefix := fmt.Sprintf("requests[%d]", i)
		var req Request
		if err := DecodeStrict(raw, &req); err != nil {
			return nil, prefixed(prefix, err)
		}
		if err := req.validate(prefix); err != nil {
			return nil, err
		}
		reqs[i] = &req
	}
	return reqs, nil
}

func (r *Request) validate(prefix string) error {
	for _, f := range []struct {
		name string
		ref  EntityRef
	}{{"principal", r.Principal}, {"action", r.Action}, {"resource", r.Resource}} {
		if f.ref.IsZero() {
			return BadRequest(JoinField(prefix, f.name), errors.New("required"))
		}
		if f.ref.Type == "" {
			return BadRequest(JoinField(prefix, f.name+".type"), errors.New("required"))
		}
	}
	if len(r.Context) > 0 {
		if b := bytes.TrimSpace(r.Context); len(b) > 0 && b[0] != '{' && string(b) != "null" {
			return BadRequest(JoinField(prefix, "context"), fmt.Errorf("want a JSON object, got %s", truncate(b, 40)))
		}
	}
	for i, e := range r.Entities {
		if e.UID.Type == "" {
			return BadRequest(JoinField(prefix, fmt.Sprintf("entities[%d].uid", i)), errors.New("required"))
		}
	}
	return nil
}

// DecodeStrict decodes exactly one JSON value, rejecting unknown fields, and
// turns encoding/json's errors into RequestErrors that name the field.
func DecodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return BadRequest("", errors.New("unexpected data after the JSON object"))
	}
	return nil
}

func jsonError(err error) error {
	var (
		typeErr   *json.UnmarshalTypeError
		syntaxErr *json.SyntaxError
	)
	var re *RequestError
	switch {
	case errors.As(err, &re):
		return re
	case errors.As(err, &typeErr):
		// Embedded aliases (see UnmarshalJSON) appear in encoding/json's
		// paths; they are not fields the caller wrote.
		field := strings.NewReplacer("plain.", "", "credentialFields.", "").Replace(typeErr.Field)
		if field == "" {
			field = "body"
		}
		return BadRequest(field, fmt.Errorf("want %s, got JSON %s", typeErr.Type, typeErr.Value))
	case errors.As(err, &syntaxErr):
		return BadRequest("", fmt.Errorf("malformed JSON at byte %d: %w", syntaxErr.Offset, err))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return BadRequest("", errors.New("malformed JSON: body is empty or truncated"))
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return BadRequest(strings.Trim(name, `"`), errors.New("unknown field"))
	}
	// Errors from our own UnmarshalJSON methods (entity references) carry no
	// path from encoding/json, but they quote the offending value.
	return BadRequest("", errors.New(strings.TrimPrefix(msg, "json: ")))
}

// JoinField joins a field path to its prefix: requests[0] and principal
// make requests[0].principal.
func JoinField(prefix, field string) string {
	switch {
	case prefix == "":
		return field
	case field == "":
		return prefix
	}
	return prefix + "." + field
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…"
}
