package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"sync"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// The request's fast path. The library (jsonv2.Unmarshal into
// requestFields) reads a request through reflection, member by member;
// this reads the common shape of a request with the same decoder and the
// same options, member by exact name, and gives up (ok false) at anything
// else: an unknown or escaped name, a null where the library has rules of
// its own, a kind the field does not take, any error. The caller then
// reads the body again with the library, which decides and names every
// refusal, so that an error is always the library's own. The fast path
// only ever accepts what the library accepts, as the library reads it:
// TestDecodeRequest_MatchesLibrary, TestDecodeRequest_FastPathReadsEveryField
// (by reflection over the json tags) and FuzzDecodeRequestMatchesLibrary
// hold it to that.

// requestDecoder is a pooled decoder reading its input in place (a
// bytes.Buffer is not copied by jsontext).
type requestDecoder struct {
	src bytes.Buffer
	dec *jsontext.Decoder
}

var requestDecoders = sync.Pool{New: func() any {
	d := &requestDecoder{}
	d.dec = jsontext.NewDecoder(&d.src, readOptions)
	return d
}}

// withDecoder runs read on a pooled decoder over b, and reports whether it
// read exactly one value, the whole of b.
func withDecoder(b []byte, read func(dec *jsontext.Decoder) bool) bool {
	d := requestDecoders.Get().(*requestDecoder)
	d.src = *bytes.NewBuffer(b)
	d.dec.Reset(&d.src, readOptions)
	ok := read(d.dec)
	if ok {
		_, err := d.dec.ReadToken()
		ok = errors.Is(err, io.EOF)
	}
	d.src = bytes.Buffer{} // hold nothing of b in the pool
	d.dec.Reset(&d.src)
	requestDecoders.Put(d)
	return ok
}

// decodeRequestFast reads one request, or reports that the library must.
func decodeRequestFast(b []byte) (*Request, bool) {
	req := new(Request)
	if !withDecoder(b, func(dec *jsontext.Decoder) bool { return readRequest(dec, req) }) {
		return nil, false
	}
	return req, true
}

// decodeBatchFast reads {"requests":[…]}, or reports that the library
// must.
func decodeBatchFast(b []byte) ([]*Request, bool) {
	var reqs []*Request
	ok := withDecoder(b, func(dec *jsontext.Decoder) bool {
		if !beginObject(dec) || !nextName(dec, `"requests"`) || dec.PeekKind() != '[' {
			return false
		}
		if _, err := dec.ReadToken(); err != nil {
			return false
		}
		reqs = []*Request{} // as the library: [] is empty, not nil
		for dec.PeekKind() == '{' {
			req := new(Request)
			if !readRequest(dec, req) {
				return false
			}
			reqs = append(reqs, req)
		}
		return endArray(dec) && endObject(dec)
	})
	return reqs, ok
}

// readRequest reads the request object's members into r.
func readRequest(dec *jsontext.Decoder, r *Request) bool {
	if !beginObject(dec) {
		return false
	}
	for dec.PeekKind() == '"' {
		name, err := dec.ReadValue() // the name as written: an escaped name is the library's
		if err != nil {
			return false
		}
		var ok bool
		switch string(name) {
		case `"principal"`:
			ok = readRef(dec, &r.Principal)
		case `"action"`:
			ok = readRef(dec, &r.Action)
		case `"resource"`:
			ok = readRef(dec, &r.Resource)
		case `"context"`:
			r.Context, ok = readRaw(dec)
		case `"entities"`:
			r.Entities, ok = readEntities(dec)
		case `"session_id"`:
			r.SessionID, ok = readString(dec)
		case `"task_id"`:
			r.TaskID, ok = readString(dec)
		case `"trace_id"`:
			r.TraceID, ok = readString(dec)
		case `"parent_decision_id"`:
			r.ParentDecisionID, ok = readString(dec)
		case `"tool_call_id"`:
			r.ToolCallID, ok = readString(dec)
		case `"on_behalf_of"`:
			r.OnBehalfOf, ok = readString(dec)
		case `"prompt"`:
			r.Prompt, ok = readString(dec)
		case `"credential"`:
			r.Credential, ok = readCredential(dec)
		case `"approval"`:
			r.Approval, ok = readString(dec)
		case `"token"`:
			r.Token, ok = readString(dec)
		}
		if !ok {
			return false
		}
	}
	return endObject(dec)
}

// readEntities reads a non-empty or empty array of entity objects (as
// the library, [] gives an empty slice, not nil).
func readEntities(dec *jsontext.Decoder) ([]Entity, bool) {
	if !beginArray(dec) {
		return nil, false
	}
	ents := []Entity{}
	for dec.PeekKind() == '{' {
		ents = append(ents, Entity{})
		if !readEntity(dec, &ents[len(ents)-1]) {
			return nil, false
		}
	}
	return ents, endArray(dec)
}

func readEntity(dec *jsontext.Decoder, e *Entity) bool {
	if !beginObject(dec) {
		return false
	}
	for dec.PeekKind() == '"' {
		name, err := dec.ReadValue()
		if err != nil {
			return false
		}
		var ok bool
		switch string(name) {
		case `"uid"`:
			ok = readRef(dec, &e.UID)
		case `"attrs"`:
			e.Attrs, ok = readRaw(dec)
		case `"parents"`:
			e.Parents, ok = readRefs(dec)
		case `"tags"`:
			e.Tags, ok = readRaw(dec)
		}
		if !ok {
			return false
		}
	}
	return endObject(dec)
}

func readRefs(dec *jsontext.Decoder) ([]EntityRef, bool) {
	if !beginArray(dec) {
		return nil, false
	}
	refs := []EntityRef{}
	for k := dec.PeekKind(); k == '"' || k == '{'; k = dec.PeekKind() {
		refs = append(refs, EntityRef{})
		if !readRef(dec, &refs[len(refs)-1]) {
			return nil, false
		}
	}
	return refs, endArray(dec)
}

// readRef reads a reference in either wire form with its own reader, as
// the library does; null is the library's. The reference's JSON text is
// read whole first (the decoder checks it as it would token by token):
// refMemo may know it.
func readRef(dec *jsontext.Decoder, r *EntityRef) bool {
	if k := dec.PeekKind(); k != '"' && k != '{' {
		return false
	}
	raw, err := dec.ReadValue()
	if err != nil {
		return false
	}
	if ref, ok := refMemo.get(raw); ok {
		*r = ref
		return true
	}
	var ref EntityRef
	if !withDecoder(raw, func(sub *jsontext.Decoder) bool { return ref.UnmarshalJSONFrom(sub) == nil }) {
		return false
	}
	refMemo.put(raw, ref)
	*r = ref
	return true
}

// refMemo remembers the references the fast path read, by their JSON
// text: requests name the same principals, actions, resources and parents
// again and again, and reading one token by token costs its four strings.
// An EntityRef is two strings, which nothing changes.
var refMemo = newMemo[EntityRef]()

// readRaw copies the next value as encoding/json.RawMessage's
// UnmarshalJSON does, null included.
func readRaw(dec *jsontext.Decoder) (json.RawMessage, bool) {
	v, err := dec.ReadValue()
	if err != nil {
		return nil, false
	}
	return append(json.RawMessage(nil), v...), true
}

func readString(dec *jsontext.Decoder) (string, bool) {
	if dec.PeekKind() != '"' {
		return "", false
	}
	tok, err := dec.ReadToken()
	if err != nil {
		return "", false
	}
	return tok.String(), true
}

// readCredential reads the credential object with the library itself (its
// times are RFC 3339 as the library reads them).
func readCredential(dec *jsontext.Decoder) (*Credential, bool) {
	if dec.PeekKind() != '{' {
		return nil, false
	}
	c := new(Credential)
	if err := jsonv2.UnmarshalDecode(dec, c, readOptions); err != nil {
		return nil, false
	}
	return c, true
}

func beginObject(dec *jsontext.Decoder) bool { return readDelim(dec, '{') }
func endObject(dec *jsontext.Decoder) bool   { return readDelim(dec, '}') }
func beginArray(dec *jsontext.Decoder) bool  { return readDelim(dec, '[') }
func endArray(dec *jsontext.Decoder) bool    { return readDelim(dec, ']') }

func readDelim(dec *jsontext.Decoder, k jsontext.Kind) bool {
	if dec.PeekKind() != k {
		return false
	}
	_, err := dec.ReadToken()
	return err == nil
}

// nextName reads the next object name and reports whether it is want, as
// written (quoted).
func nextName(dec *jsontext.Decoder, want string) bool {
	if dec.PeekKind() != '"' {
		return false
	}
	name, err := dec.ReadValue()
	return err == nil && string(name) == want
}
