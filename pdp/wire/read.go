package wire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// DefaultMaxDepth is the nesting limit of the reading when none is
// configured (the config key max_json_depth).
const DefaultMaxDepth = 64

// Reader is the one reading of JSON input, strict by default:
//
//   - names are case-sensitive ("PRINCIPAL" is an unknown field, not principal);
//   - a name may appear only once in an object, at any depth; the error
//     names the duplicate by its JSON pointer;
//   - strings must be valid UTF-8 (nothing is replaced by U+FFFD);
//   - unknown fields, wrong types and data after the value are errors;
//   - objects and arrays nest at most MaxDepth deep, counted from the
//     request object (whose own depth is 1), and this is enforced while
//     decoding, so no later stage (SQLite's JSON functions, Cedar) can
//     refuse what was accepted.
//
// Every error is a *[RequestError] naming the offending value's JSON pointer.
type Reader struct {
	MaxDepth int // default DefaultMaxDepth
}

// readOptions are the reading's rules, the library's own defaults made
// explicit so that no change of default can loosen them.
var readOptions = jsonv2.JoinOptions(
	jsonv2.RejectUnknownMembers(true),
	jsonv2.MatchCaseInsensitiveNames(false),
	jsontext.AllowDuplicateNames(false),
	jsontext.AllowInvalidUTF8(false),
)

func (rd Reader) maxDepth() int {
	if rd.MaxDepth <= 0 {
		return DefaultMaxDepth
	}
	return rd.MaxDepth
}

// unmarshal reads exactly one JSON value from b into v. extraDepth is how
// deep the requests sit in b (2 in a batch: the body and its array).
func (rd Reader) unmarshal(b []byte, v any, extraDepth int) error {
	if err := checkDepth(b, rd.maxDepth()+extraDepth); err != nil {
		return err
	}
	if err := jsonv2.Unmarshal(b, v, readOptions); err != nil {
		return readError(err)
	}
	return nil
}

// DecodeRequest reads one authorization request and checks that its
// required fields are present.
//
// The common shape of a request is read by a fast path (request_fast.go);
// anything else, every refusal included, by the library.
func (rd Reader) DecodeRequest(b []byte) (*Request, error) {
	if err := checkDepth(b, rd.maxDepth()); err != nil {
		return nil, err
	}
	req, ok := decodeRequestFast(b)
	if !ok {
		req = new(Request)
		if err := jsonv2.Unmarshal(b, (*requestFields)(req), readOptions); err != nil {
			return nil, readError(err)
		}
	}
	if err := req.validate(""); err != nil {
		return nil, err
	}
	return req, nil
}

// DecodeBatch reads {"requests":[…]}, naming the index of a bad request.
func (rd Reader) DecodeBatch(b []byte) ([]*Request, error) {
	if err := checkDepth(b, rd.maxDepth()+2); err != nil {
		return nil, err
	}
	reqs, ok := decodeBatchFast(b)
	if !ok {
		var batch struct {
			Requests []*requestFields `json:"requests"`
		}
		if err := jsonv2.Unmarshal(b, &batch, readOptions); err != nil {
			return nil, readError(err)
		}
		reqs = make([]*Request, len(batch.Requests))
		for i, r := range batch.Requests {
			reqs[i] = (*Request)(r)
		}
	}
	if len(reqs) == 0 {
		return nil, BadRequest("/requests", errors.New("missing or empty"))
	}
	for i, r := range reqs {
		prefix := "/requests/" + strconv.Itoa(i)
		if r == nil {
			return nil, BadRequest(prefix, errors.New("null is not a request"))
		}
		if err := r.validate(prefix); err != nil {
			return nil, err
		}
	}
	return reqs, nil
}

// DecodeOutcome reads what a caller reports happened after a decision.
func (rd Reader) DecodeOutcome(b []byte) (*OutcomeRequest, error) {
	var req OutcomeRequest
	if err := rd.unmarshal(b, &req, 0); err != nil {
		return nil, err
	}
	return &req, nil
}

// DecodeApproval reads a human's answer to a step_up decision; approver
// and approved are required.
func (rd Reader) DecodeApproval(b []byte) (*ApprovalRequest, error) {
	var req struct {
		Approver *string `json:"approver"`
		Approved *bool   `json:"approved"`
		Comment  string  `json:"comment"`
	}
	if err := rd.unmarshal(b, &req, 0); err != nil {
		return nil, err
	}
	if req.Approved == nil {
		return nil, BadRequest("/approved", errors.New("required: true or false"))
	}
	if req.Approver == nil {
		return nil, BadRequest("/approver", errors.New("required"))
	}
	return &ApprovalRequest{Approver: *req.Approver, Approved: *req.Approved, Comment: req.Comment}, nil
}

// Unmarshal reads any value with the reading's rules.
func (rd Reader) Unmarshal(b []byte, v any) error { return rd.unmarshal(b, v, 0) }

// DecodeRequest is Reader{}.DecodeRequest: the default depth limit.
func DecodeRequest(b []byte) (*Request, error) { return Reader{}.DecodeRequest(b) }

// DecodeBatch is Reader{}.DecodeBatch.
func DecodeBatch(b []byte) ([]*Request, error) { return Reader{}.DecodeBatch(b) }

// checkDepth refuses JSON nested deeper than limit. It counts brackets
// outside strings, which for the valid JSON the decoder then insists on is
// the nesting depth; only when the limit is passed does it run the
// decoder to name where. A string is skipped to its closing quote, found
// with bytes.IndexByte: a quote ends the string unless an odd run of
// backslashes precedes it.
func checkDepth(b []byte, limit int) error {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch depthClass[b[i]] {
		case 0:
			continue
		case '"':
			for {
				j := bytes.IndexByte(b[i+1:], '"')
				if j < 0 {
					return nil // unterminated: the decoder says so
				}
				i += j + 1
				k := i - 1
				for k >= 0 && b[k] == '\\' {
					k--
				}
				if (i-1-k)%2 == 0 {
					break
				}
			}
		case '{':
			if depth++; depth > limit {
				return locateDepth(b, limit)
			}
		case '}':
			depth--
		}
	}
	return nil
}

// depthClass classes the bytes checkDepth stops at: a quote, an opening or
// a closing bracket; 0 for every other.
var depthClass = func() (c [256]byte) {
	c['"'] = '"'
	c['{'], c['['] = '{', '{'
	c['}'], c[']'] = '}', '}'
	return c
}()

// locateDepth names the first value nested deeper than limit, or the
// syntax error met before it.
func locateDepth(b []byte, limit int) error {
	dec := jsontext.NewDecoder(bytes.NewReader(b), readOptions)
	for {
		if _, err := dec.ReadToken(); err != nil {
			return readError(err)
		}
		if dec.StackDepth() > limit {
			return BadRequest(string(dec.StackPointer()), fmt.Errorf("nested deeper than %d objects and arrays (max_json_depth)", limit))
		}
	}
}

// readError turns the library's errors into RequestErrors that name the
// value by its JSON pointer.
func readError(err error) error {
	var re *RequestError
	var se *jsontext.SyntacticError
	var me *jsonv2.SemanticError
	switch {
	case errors.As(err, &me):
		ptr := string(me.JSONPointer)
		if errors.As(me.Err, &re) {
			if re.Field == ptr || strings.HasPrefix(re.Field, ptr+"/") {
				return re // named by the decoder's own pointer already
			}
			return BadRequest(ptr+re.Field, re.Err)
		}
		switch {
		case errors.Is(me.Err, jsonv2.ErrUnknownName):
			return BadRequest(ptr, errors.New("unknown field (names are case-sensitive)"))
		case me.GoType == reflect.TypeFor[time.Time]():
			return BadRequest(ptr, errors.New("want an RFC 3339 time string"))
		case me.Err != nil && (me.GoType == nil || me.JSONKind == 0):
			return BadRequest(ptr, me.Err) // from our own UnmarshalJSONFrom
		}
		return BadRequest(ptr, fmt.Errorf("want %s, got %s", goTypeName(me.GoType), kindName(me.JSONKind)))
	case errors.As(err, &se):
		ptr := string(se.JSONPointer)
		switch {
		case errors.Is(se.Err, jsontext.ErrDuplicateName):
			return BadRequest(ptr, errors.New("duplicate name: a name may appear only once in an object"))
		case errors.Is(se.Err, io.ErrUnexpectedEOF):
			return BadRequest(ptr, errors.New("malformed JSON: body is empty or truncated"))
		}
		msg := strings.TrimPrefix(se.Err.Error(), "jsontext: ")
		if strings.Contains(msg, "invalid UTF-8") {
			return BadRequest(ptr, errors.New("invalid UTF-8: strings must be valid UTF-8 (nothing is replaced)"))
		}
		return BadRequest(ptr, fmt.Errorf("malformed JSON at byte %d: %s", se.ByteOffset, msg))
	case errors.As(err, &re):
		return re
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return BadRequest("", errors.New("malformed JSON: body is empty or truncated"))
	}
	return BadRequest("", err)
}

// kindName names a JSON kind as an error message says it.
func kindName(k jsontext.Kind) string {
	switch k {
	case '"':
		return "a string"
	case '0':
		return "a number"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "another value"
}

// goTypeName says what a Go type wants on the wire.
func goTypeName(t reflect.Type) string {
	if t == nil {
		return "another value"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Slice, reflect.Array:
		return "an array (" + t.String() + ")"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return t.String()
}
