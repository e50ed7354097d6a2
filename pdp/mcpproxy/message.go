package mcpproxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
)

// DefaultMaxDepth is how deeply a message's JSON may nest, objects and
// arrays counted alike; the daemon's default limit (issue 11: one nesting
// limit, enforced while decoding).
const DefaultMaxDepth = 64

// strictDecoding is the one reading of JSON the proxy does: jsontext's
// defaults refuse duplicate member names and invalid UTF-8 (including lone
// surrogates written as escapes), and member names are compared exactly.
var strictDecoding = []jsontext.Options{jsontext.AllowDuplicateNames(false), jsontext.AllowInvalidUTF8(false)}

// canonical reads one JSON value strictly and returns it re-encoded:
// compact, strings in their minimal escaping (so "\u0061" is "a"), numbers
// and member order as sent. These bytes, never the line as received, are
// what the proxy reads its decision from and what it forwards, so the other
// side cannot parse something the proxy did not.
func canonical(line []byte, maxDepth int) ([]byte, error) {
	dec := jsontext.NewDecoder(bytes.NewBuffer(line), strictDecoding...)
	var out bytes.Buffer
	out.Grow(len(line))
	enc := jsontext.NewEncoder(&out)
	for {
		tok, err := dec.ReadToken()
		if err != nil {
			return nil, fmt.Errorf("invalid JSON: %w", err)
		}
		if dec.StackDepth() > maxDepth {
			return nil, fmt.Errorf("invalid JSON: nested deeper than %d at %s", maxDepth, dec.StackPointer())
		}
		if err := enc.WriteToken(tok); err != nil {
			return nil, fmt.Errorf("invalid JSON: %w", err)
		}
		if dec.StackDepth() == 0 {
			break
		}
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return nil, errors.New("invalid JSON: more than one value on the line")
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
}

// message is one JSON-RPC 2.0 message, read from canonical bytes. Values
// are canonical JSON; a member that was absent is nil.
type message struct {
	raw       []byte // the whole message, canonical: what is forwarded
	id        jsontext.Value
	method    string
	params    jsontext.Value
	result    jsontext.Value
	err       jsontext.Value
	hasMethod bool
}

func (m *message) isRequest() bool      { return m.hasMethod && m.id != nil }
func (m *message) isNotification() bool { return m.hasMethod && m.id == nil }
func (m *message) isResponse() bool     { return !m.hasMethod }

// parseMessage reads a canonical JSON-RPC 2.0 object. Member names are
// JSON-RPC's own, spelled exactly: "Method" beside "method" is refused, not
// ignored, because a reader that folds case would see it.
func parseMessage(raw []byte) (*message, error) {
	if len(raw) == 0 || raw[0] != '{' {
		return nil, errors.New("a JSON-RPC message must be a JSON object")
	}
	m := &message{raw: raw}
	var version jsontext.Value
	err := eachMember(raw, func(n string, v jsontext.Value) error {
		switch n {
		case "jsonrpc":
			version = v.Clone()
		case "id":
			m.id = v.Clone()
		case "method":
			if v.Kind() != '"' {
				return errors.New(`"method" must be a string`)
			}
			m.method, m.hasMethod = unquote(v), true
		case "params":
			m.params = v.Clone()
		case "result":
			m.result = v.Clone()
		case "error":
			m.err = v.Clone()
		default:
			return fmt.Errorf("member %q is not a JSON-RPC 2.0 member (names are case-sensitive)", n)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if string(version) != `"2.0"` {
		return nil, errors.New(`"jsonrpc" must be "2.0"`)
	}
	if m.params != nil && m.params.Kind() != '{' && m.params.Kind() != '[' {
		return nil, errors.New(`"params" must be an object or an array`)
	}
	switch {
	case m.hasMethod:
		if m.result != nil || m.err != nil {
			return nil, errors.New("a request has no result or error")
		}
		if m.id != nil && m.id.Kind() != '"' && m.id.Kind() != '0' {
			return nil, errors.New(`a request's "id" must be a string or a number`)
		}
	case m.id == nil:
		return nil, errors.New(`a message needs a "method" or, as a response, an "id"`)
	case (m.result == nil) == (m.err == nil):
		return nil, errors.New(`a response has exactly one of "result" and "error"`)
	}
	return m, nil
}

func unquote(v jsontext.Value) string {
	tok, err := jsontext.NewDecoder(bytes.NewBuffer(v)).ReadToken()
	if err != nil {
		return ""
	}
	return tok.String()
}

// idKey is a JSON-RPC id as a JSON value, for matching answers to requests:
// 1, 1.0 and 1e1/10 compare as numbers (as a JavaScript server, which holds
// numbers as float64, echoes them), "\u0061" and "a" are one string, and 7
// and "7" differ. The empty key is no id (null).
func idKey(v jsontext.Value) (string, error) {
	switch v.Kind() {
	case '"':
		return "s" + unquote(v), nil
	case '0':
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil || math.IsInf(f, 0) {
			return "", fmt.Errorf("id %s is not a number a server can hold", v)
		}
		if f == 0 {
			f = 0 // -0
		}
		// Written as JavaScript writes a number: an integer in full below
		// 1e21 (1234567, not %g's 1.234567e+06, which a query for the
		// tool call never finds), else the shortest form.
		if f == math.Trunc(f) && math.Abs(f) < 1e21 {
			return "n" + strconv.FormatFloat(f, 'f', -1, 64), nil
		}
		return "n" + strconv.FormatFloat(f, 'g', -1, 64), nil
	case 'n':
		return "", nil
	}
	return "", fmt.Errorf("id %s must be a string or a number", v)
}

// idText is how an id is logged as the decision's tool_call_id: its value
// as JSON, so the number 7 is `7` and the string "7" is `"7"`.
func idText(key string) string {
	if strings.HasPrefix(key, "n") {
		return key[1:]
	}
	b, _ := jsontext.AppendQuote(nil, key[1:])
	return string(b)
}

// callParams are a tools/call's params (MCP CallToolRequest), strictly: no
// member beyond MCP's own, so that what a server reads is what was decided.
type callParams struct {
	name string
	args jsontext.Value // an object; {} when absent
	meta map[string]string
	task bool // task-augmented (MCP 2025-11-25)
}

func parseCallParams(params jsontext.Value) (*callParams, error) {
	if params.Kind() != '{' {
		return nil, errors.New("tools/call needs params, an object")
	}
	cp := &callParams{args: jsontext.Value("{}"), meta: map[string]string{}}
	hasName := false
	err := eachMember(params, func(n string, v jsontext.Value) error {
		switch n {
		case "name":
			if v.Kind() != '"' {
				return errors.New("params.name must be a string")
			}
			cp.name, hasName = unquote(v), true
		case "arguments":
			if v.Kind() != '{' {
				return errors.New("params.arguments must be an object")
			}
			cp.args = v.Clone()
		case "_meta":
			if v.Kind() != '{' {
				return errors.New("params._meta must be an object")
			}
			cp.meta = stringMembers(v)
		case "task":
			if v.Kind() != '{' {
				return errors.New("params.task must be an object")
			}
			cp.task = true
		default:
			return fmt.Errorf("params member %q is not part of MCP's tools/call (names are case-sensitive)", n)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !hasName || cp.name == "" {
		return nil, errors.New("tools/call needs params.name")
	}
	return cp, nil
}

// stringMembers are an object's members whose values are strings.
func stringMembers(obj jsontext.Value) map[string]string {
	out := map[string]string{}
	eachMember(obj, func(n string, v jsontext.Value) error { // obj is canonical: no error to see
		if v.Kind() == '"' {
			out[n] = unquote(v)
		}
		return nil
	})
	return out
}

// eachMember calls fn with each member of the object obj, in order, and
// stops at fn's first error or obj's. v is valid only during the call (the
// decoder reuses its buffer): fn clones what it keeps.
func eachMember(obj []byte, fn func(name string, v jsontext.Value) error) error {
	dec := jsontext.NewDecoder(bytes.NewBuffer(obj))
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil {
			return err
		}
		n := name.String() // before the token is voided by the next read
		v, err := dec.ReadValue()
		if err != nil {
			return err
		}
		if err := fn(n, v); err != nil {
			return err
		}
	}
	return nil
}

// member is one member of a canonical object, or nil.
func member(obj jsontext.Value, name string) jsontext.Value {
	if obj.Kind() != '{' {
		return nil
	}
	dec := jsontext.NewDecoder(bytes.NewBuffer(obj))
	dec.ReadToken()
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return nil
		}
		if tok.String() == name {
			v, err := dec.ReadValue()
			if err != nil {
				return nil
			}
			return v.Clone()
		}
		if dec.SkipValue() != nil {
			return nil
		}
	}
	return nil
}

// elements are a canonical array's elements.
func elements(arr jsontext.Value) []jsontext.Value {
	var out []jsontext.Value
	dec := jsontext.NewDecoder(bytes.NewBuffer(arr))
	dec.ReadToken()
	for dec.PeekKind() != ']' {
		v, err := dec.ReadValue()
		if err != nil {
			return out
		}
		out = append(out, v.Clone())
	}
	return out
}
