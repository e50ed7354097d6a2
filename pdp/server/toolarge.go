package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/agentpdp/agentpdp/pdp/wire"
)

// scanTooLarge reads, from an authorization request too large to decode,
// what a refusal needs: principal, action and resource (required), and the
// correlation ids. It streams: members it does not keep are skipped token
// by token, and it reads at most max bytes. The context and entities are
// not kept; the refusal is logged without them.
func scanTooLarge(r io.Reader, max int64) (*wire.Request, error) {
	dec := jsontext.NewDecoder(io.LimitReader(r, max))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return nil, errors.New("not a JSON object")
	}
	req := &wire.Request{}
	refs := map[string]*wire.EntityRef{"principal": &req.Principal, "action": &req.Action, "resource": &req.Resource}
	strs := map[string]*string{"session_id": &req.SessionID, "task_id": &req.TaskID, "trace_id": &req.TraceID,
		"parent_decision_id": &req.ParentDecisionID, "tool_call_id": &req.ToolCallID, "on_behalf_of": &req.OnBehalfOf}
	seen := map[string]bool{}
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			break
		}
		name := tok.String()
		if seen[name] {
			return nil, fmt.Errorf("member %q appears twice", name)
		}
		seen[name] = true
		if ref, ok := refs[name]; ok {
			v, err := dec.ReadValue()
			if err != nil {
				break
			}
			if len(v) > 4096 {
				return nil, wire.BadRequest(name, errors.New("too long"))
			}
			if err := ref.UnmarshalJSON(v); err != nil {
				return nil, wire.BadRequest(name, err)
			}
			continue
		}
		if s, ok := strs[name]; ok && dec.PeekKind() == '"' {
			v, err := dec.ReadValue()
			if err != nil {
				break
			}
			if len(v) <= 4096 {
				tok, _ := jsontext.NewDecoder(bytes.NewReader(v)).ReadToken()
				*s = tok.String()
			}
			continue
		}
		if err := dec.SkipValue(); err != nil {
			break
		}
	}
	for _, name := range []string{"principal", "action", "resource"} {
		if refs[name].IsZero() {
			return nil, wire.BadRequest(name, errors.New("required (and not found within the part of the body read)"))
		}
	}
	return req, nil
}

// readRequestBody reads an authorization request. One over the body limit
// is not refused unlogged: its principal, action and resource are read as
// it streams past (up to 16 times the limit), and it is recorded and
// answered as a deny with reason request_too_large. Only a body too large
// and unreadable even so gets a 400.
func (s *Server) readRequestBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	limit := s.opts.MaxBodyBytes
	head, err := readHead(r.Body, limit+1, r.ContentLength)
	if err != nil {
		s.fail(w, r, wire.BadRequest("", fmt.Errorf("read body: %w", err)))
		return nil, false
	}
	if int64(len(head)) <= limit {
		return head, true
	}
	counted := &countingReader{r: io.MultiReader(bytes.NewReader(head), r.Body)}
	req, err := scanTooLarge(counted, 16*limit)
	if err != nil {
		s.fail(w, r, wire.BadRequest("", fmt.Errorf("request body exceeds the limit of %d bytes, and its principal, action and resource could not be read: %w", limit, err)))
		return nil, false
	}
	io.Copy(io.Discard, io.LimitReader(counted, 16*limit)) // its size, for the record
	size := fmt.Sprintf("%d", counted.n)
	if counted.n >= 16*limit {
		size = "at least " + size
	}
	d, err := s.opts.Engine.Refuse(r.Context(), req, peerFrom(r), wire.ReasonRequestTooLarge,
		fmt.Sprintf("request body of %s bytes exceeds the limit of %d bytes (max_body_bytes)", size, limit))
	if err != nil {
		s.fail(w, r, err)
		return nil, false
	}
	b, err := wire.MarshalDecision(d)
	if err != nil {
		s.fail(w, r, err)
		return nil, false
	}
	writeBody(w, http.StatusOK, b)
	return nil, false
}

// readHead is io.ReadAll(io.LimitReader(r, n)) in one allocation when size
// (the Content-Length, or -1 when unknown) is known and less than n: the
// buffer has room for the body and for the read that finds its end.
func readHead(r io.Reader, n, size int64) ([]byte, error) {
	if size < 0 || size >= n {
		return io.ReadAll(io.LimitReader(r, n))
	}
	lr := io.LimitedReader{R: r, N: n}
	b := make([]byte, 0, size+1)
	for {
		m, err := lr.Read(b[len(b):cap(b)])
		b = b[:len(b)+m]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) { // longer than it said: grow as ReadAll does
			b = append(b, 0)[:len(b)]
		}
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
