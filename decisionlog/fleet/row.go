package fleet

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// Row is one shipped log row, split back into the envelope the host's sink
// added and the body its hash chain covers.
type Row struct {
	Origin string
	Seq    int64
	Kind   string
	TimeNS int64  // Unix nanoseconds, exactly as hashed (timestamptz keeps only microseconds)
	Hash   []byte // the row's chain hash, 32 bytes
	Body   []byte // the body exactly as the host hashed it
	// Stub is a row the host's sink could not ship whole (too_large): its
	// content is gone, so only its hash links the chain, and only the next
	// checkpoint's signature vouches for it.
	Stub bool

	// Columns are the body's values for RowColumns, in order; "" where
	// the body has none.
	Columns []string
}

// RowColumns are the record fields fleet_rows keeps as columns beside the
// body (migration 1), each a member of the body's top level; queries read
// the others from the body by path.
var RowColumns = []wire.Field{wire.FieldDecisionID, wire.FieldPrincipal, wire.FieldAction, wire.FieldResource, wire.FieldDecision}

// rowColumn is the index in RowColumns of each top-level member name.
var rowColumn = func() map[string]int {
	m := map[string]int{}
	for i, f := range RowColumns {
		if ms := f.Members(); len(ms) == 1 {
			m[ms[0]] = i
		}
	}
	return m
}()

// envelope is the order in which the host's sink writes the row's own
// fields before the body's (decisionlog.Entry.MarshalJSON, with origin
// first): a row in another order was not written by a sink.
var envelope = [...]string{"origin", "seq", "kind", "time", "hash"}

// ParseRow reads one shipped row: a JSON object whose first members are
// origin, seq, kind, time and hash, followed by the body's own members.
// The body is recovered byte for byte, as the host hashed it, so that the
// chain can be recomputed. Errors name what is wrong.
func ParseRow(line []byte) (*Row, error) {
	line = bytes.TrimSpace(line)
	dec := jsontext.NewDecoder(bytes.NewReader(line))
	tok, err := dec.ReadToken()
	if err != nil || tok.Kind() != '{' {
		return nil, errors.New("row: not a JSON object")
	}
	r := &Row{}
	for _, want := range envelope {
		name, err := dec.ReadToken()
		if err != nil {
			return nil, fmt.Errorf("row: %w", err)
		}
		if name.Kind() != '"' || name.String() != want {
			return nil, fmt.Errorf("row: member %q where %q was expected (a shipped row starts with origin, seq, kind, time, hash)", name.String(), want)
		}
		val, err := dec.ReadToken()
		if err != nil {
			return nil, fmt.Errorf("row: %s: %w", want, err)
		}
		switch want {
		case "origin", "kind", "time", "hash":
			if val.Kind() != '"' {
				return nil, fmt.Errorf("row: %s: want a string", want)
			}
		case "seq":
			if val.Kind() != '0' {
				return nil, errors.New("row: seq: want a number")
			}
		}
		switch want {
		case "origin":
			r.Origin = val.String()
		case "seq":
			r.Seq, err = strconv.ParseInt(val.String(), 10, 64)
			if err != nil || r.Seq <= 0 {
				return nil, fmt.Errorf("row: seq %s: want a positive integer", val.String())
			}
		case "kind":
			r.Kind = val.String()
		case "time":
			t, err := time.Parse(time.RFC3339Nano, val.String())
			if err != nil {
				return nil, fmt.Errorf("row: time: %w", err)
			}
			r.TimeNS = t.UnixNano()
		case "hash":
			r.Hash, err = hex.DecodeString(val.String())
			if err != nil || len(r.Hash) != 32 {
				return nil, fmt.Errorf("row: hash %q: want 64 hex digits", val.String())
			}
		}
	}
	if r.Origin == "" || r.Kind == "" {
		return nil, errors.New("row: origin and kind must not be empty")
	}
	// The body's members follow the envelope's: MarshalJSON wrote the head
	// without its closing brace, a comma, then the body without its
	// opening one. Undo exactly that.
	off := dec.InputOffset()
	rest := line[off:]
	switch {
	case len(rest) == 1 && rest[0] == '}':
		r.Body = []byte("{}")
	case len(rest) > 1 && rest[0] == ',':
		r.Body = make([]byte, 0, len(rest))
		r.Body = append(r.Body, '{')
		r.Body = append(r.Body, rest[1:]...)
	default:
		return nil, errors.New("row: want ',' or '}' after the hash")
	}
	if !json.Valid(r.Body) {
		return nil, fmt.Errorf("row seq %d: body is not valid JSON", r.Seq)
	}
	// The hash, not this reading, decides whether the body is what the
	// host wrote.
	if r.Columns, r.Stub, err = readColumns(r.Body); err != nil {
		return nil, fmt.Errorf("row seq %d: body: %w", r.Seq, err)
	}
	return r, nil
}

// readColumns reads a body's values for RowColumns, and its too_large mark
// (a stub the host's sink made), in one pass over its top level. A column's
// value must be a string or null.
func readColumns(body []byte) ([]string, bool, error) {
	vals := make([]string, len(RowColumns))
	stub := false
	dec := jsontext.NewDecoder(bytes.NewReader(body), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return nil, false, errors.New("not a JSON object")
	}
	for dec.PeekKind() == '"' {
		tok, err := dec.ReadToken()
		if err != nil {
			return nil, false, err
		}
		name := tok.String() // a token lasts until the next read
		i, ok := rowColumn[name]
		if !ok && name != "too_large" {
			if err := dec.SkipValue(); err != nil {
				return nil, false, err
			}
			continue
		}
		val, err := dec.ReadToken()
		if err != nil {
			return nil, false, err
		}
		switch {
		case !ok:
			if k := val.Kind(); k != 't' && k != 'f' {
				return nil, false, errors.New("too_large: want a boolean")
			}
			stub = val.Bool()
		case val.Kind() == '"':
			vals[i] = val.String()
		case val.Kind() != 'n':
			return nil, false, fmt.Errorf("%s: want a string", name)
		}
	}
	return vals, stub, nil
}

// Entry is the row as the host's log held it, for recomputing its hash.
func (r *Row) Entry() *decisionlog.Entry {
	return &decisionlog.Entry{Seq: r.Seq, Kind: decisionlog.Kind(r.Kind), Time: time.Unix(0, r.TimeNS), Body: r.Body, Hash: r.Hash}
}

// ChainOK reports whether the row's hash is its content chained to prev,
// the hash of the row before it. A stub has no content to check.
func (r *Row) ChainOK(prev []byte) bool {
	if r.Stub {
		return true
	}
	return bytes.Equal(decisionlog.ChainHash(prev, r.Entry()), r.Hash)
}
