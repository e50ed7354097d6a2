// Package mcpproxy enforces agentpdp decisions on Model Context Protocol tool
// calls. It sits between an MCP client and an MCP server on the stdio
// transport (newline-delimited JSON-RPC 2.0) and passes every message through
// unchanged except tools/call, which is authorized first: a deny or step_up
// is answered with a JSON-RPC error and never reaches the server, and the
// outcome of an allowed call is recorded when the server answers it.
package mcpproxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/client"
)

// JSON-RPC error codes the proxy answers with, in the implementation-defined
// server error range.
const (
	CodeDenied      = -32001
	CodeStepUp      = -32002
	CodeUnavailable = -32003
)

// MetaApproval is the _meta key of a tools/call that retries a step_up with
// its approval: {"_meta": {"agentpdp/approval": "<decision id>"}}.
const MetaApproval = "agentpdp/approval"

// Proxy authorizes the tool calls of one principal against one MCP server.
type Proxy struct {
	Client      *client.Client
	Principal   pdp.EntityRef
	Server      pdp.EntityRef // the resource every call is on
	FilterTools bool          // drop from tools/list the tools the principal is denied
	Logger      *slog.Logger

	outMu   sync.Mutex // one writer of the client's stream at a time
	out     io.Writer
	mu      sync.Mutex
	pending map[string]string // JSON-RPC id → decision id, of allowed calls in flight
	lists   map[string]bool   // JSON-RPC ids of tools/list requests
}

type message struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   json.RawMessage `json:"error,omitempty"`
}

// Run relays until the server's output ends. clientIn/clientOut face the
// MCP client; serverIn/serverOut face the server. When the client's input
// ends, serverIn is closed, and the server's last answers still go through.
func (p *Proxy) Run(ctx context.Context, clientIn io.Reader, clientOut io.Writer, serverIn io.WriteCloser, serverOut io.Reader) error {
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	p.out, p.pending, p.lists = clientOut, map[string]string{}, map[string]bool{}
	fromClient := make(chan error, 1)
	go func() {
		err := p.fromClient(ctx, clientIn, serverIn)
		serverIn.Close()
		fromClient <- err
	}()
	err := p.fromServer(ctx, serverOut)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	select {
	case cerr := <-fromClient:
		if !errors.Is(cerr, io.EOF) {
			err = errors.Join(err, cerr)
		}
	default: // the server ended first; the client side ends with our process
	}
	return err
}

func lines(r io.Reader) *bufio.Scanner {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	return sc
}

func (p *Proxy) fromClient(ctx context.Context, in io.Reader, server io.Writer) error {
	sc := lines(in)
	for sc.Scan() {
		line := bytes.Clone(sc.Bytes())
		var m message
		if json.Unmarshal(line, &m) == nil && len(m.ID) > 0 {
			switch m.Method {
			case "tools/call":
				if !p.authorizeCall(ctx, &m) {
					continue // answered with an error; the server never sees it
				}
			case "tools/list":
				if p.FilterTools {
					p.mu.Lock()
					p.lists[string(m.ID)] = true
					p.mu.Unlock()
				}
			}
		}
		if _, err := server.Write(append(line, '\n')); err != nil {
			return fmt.Errorf("write to server: %w", err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read from client: %w", err)
	}
	return io.EOF
}

func (p *Proxy) fromServer(ctx context.Context, in io.Reader) error {
	sc := lines(in)
	for sc.Scan() {
		line := bytes.Clone(sc.Bytes())
		var m message
		if json.Unmarshal(line, &m) == nil && len(m.ID) > 0 && m.Method == "" {
			p.mu.Lock()
			decisionID, called := p.pending[string(m.ID)]
			delete(p.pending, string(m.ID))
			listing := p.lists[string(m.ID)]
			delete(p.lists, string(m.ID))
			p.mu.Unlock()
			if called {
				p.recordOutcome(ctx, decisionID, &m)
			}
			if listing {
				line = p.filterTools(ctx, line, &m)
			}
		}
		if err := p.send(line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read from server: %w", err)
	}
	return io.EOF
}

func (p *Proxy) send(line []byte) error {
	p.outMu.Lock()
	defer p.outMu.Unlock()
	if _, err := p.out.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("write to client: %w", err)
	}
	return nil
}

type callParams struct {
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
	Meta      map[string]any  `json:"_meta"`
}

// request is the authorization request for a tool call: action
// Action::"<tool>", resource the server, the arguments as context.args, and
// the trace and session from _meta where the client sends them.
func (p *Proxy) request(id json.RawMessage, params *callParams) *pdp.Request {
	args := params.Arguments
	if len(args) == 0 || string(args) == "null" {
		args = json.RawMessage("{}")
	}
	ctxJSON, _ := json.Marshal(map[string]json.RawMessage{"args": args})
	req := &pdp.Request{
		Principal:  p.Principal,
		Action:     pdp.EntityRef{Type: "Action", ID: params.Name},
		Resource:   p.Server,
		Context:    ctxJSON,
		ToolCallID: strings.Trim(string(id), `"`),
	}
	meta := params.Meta
	if tp, ok := meta["traceparent"].(string); ok {
		if parts := strings.Split(tp, "-"); len(parts) == 4 {
			req.TraceID = parts[1]
		}
	}
	if s, ok := meta["trace_id"].(string); ok {
		req.TraceID = s
	}
	if s, ok := meta["session_id"].(string); ok {
		req.SessionID = s
	}
	if s, ok := meta[MetaApproval].(string); ok {
		req.Approval = s
	}
	return req
}

// authorizeCall asks agentpdp about a tools/call and reports whether to
// forward it. Anything but allow is answered here, failing closed.
func (p *Proxy) authorizeCall(ctx context.Context, m *message) bool {
	var params callParams
	if err := json.Unmarshal(m.Params, &params); err != nil || params.Name == "" {
		p.reply(m.ID, -32602, "tools/call needs params.name", nil)
		return false
	}
	d, err := p.Client.Authorize(ctx, p.request(m.ID, &params))
	if err != nil {
		p.Logger.Error("authorize tool call; refusing it", "tool", params.Name, "err", err)
		p.reply(m.ID, CodeUnavailable, "tool call refused: agentpdp could not decide: "+err.Error(), nil)
		return false
	}
	data := map[string]any{"decision_id": d.DecisionID, "decision": d.Decision, "reasons": d.Reasons}
	switch d.Decision {
	case pdp.Allow:
		p.mu.Lock()
		p.pending[string(m.ID)] = d.DecisionID
		p.mu.Unlock()
		return true
	case pdp.StepUp:
		why := "approval needed"
		for _, r := range d.Reasons {
			if s := r.Annotations[pdp.AnnotationStepUp]; s != "" {
				why = s
			}
		}
		p.reply(m.ID, CodeStepUp, fmt.Sprintf("tool %s needs a human's approval (%s): approve decision %s on agentpdp's admin socket, then retry with _meta %q", params.Name, why, d.DecisionID, MetaApproval), data)
	default:
		p.reply(m.ID, CodeDenied, fmt.Sprintf("tool %s denied by %s (decision %s)", params.Name, policies(d), d.DecisionID), data)
	}
	if _, err := p.Client.Outcome(ctx, d.DecisionID, pdp.OutcomeSkipped, nil); err != nil {
		p.Logger.Warn("record skipped outcome", "decision_id", d.DecisionID, "err", err)
	}
	return false
}

func policies(d *pdp.Decision) string {
	if len(d.Reasons) == 0 {
		return "no policy permitting it"
	}
	ids := make([]string, len(d.Reasons))
	for i, r := range d.Reasons {
		ids[i] = r.Policy
	}
	return "policy " + strings.Join(ids, ", ")
}

func (p *Proxy) reply(id json.RawMessage, code int, msg string, data any) {
	e := map[string]any{"code": code, "message": msg}
	if data != nil {
		e["data"] = data
	}
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "error": e})
	if err := p.send(b); err != nil {
		p.Logger.Error("answer client", "err", err)
	}
}

func (p *Proxy) recordOutcome(ctx context.Context, decisionID string, m *message) {
	status, detail := pdp.OutcomeSuccess, any(nil)
	var result struct {
		IsError bool `json:"isError"`
	}
	switch {
	case len(m.Error) > 0:
		status, detail = pdp.OutcomeError, map[string]json.RawMessage{"error": m.Error}
	case json.Unmarshal(m.Result, &result) == nil && result.IsError:
		status, detail = pdp.OutcomeError, map[string]string{"error": "the tool reported an error (isError)"}
	}
	if _, err := p.Client.Outcome(ctx, decisionID, status, detail); err != nil {
		p.Logger.Warn("record outcome", "decision_id", decisionID, "err", err)
	}
}

// filterTools drops from a tools/list result the tools the principal is
// denied when calling them with no arguments: the tools it may ever call.
// Each check is a logged decision, like any other.
func (p *Proxy) filterTools(ctx context.Context, line []byte, m *message) []byte {
	var result map[string]json.RawMessage
	if json.Unmarshal(m.Result, &result) != nil {
		return line
	}
	var tools []map[string]any
	if json.Unmarshal(result["tools"], &tools) != nil || len(tools) == 0 {
		return line
	}
	reqs := make([]*pdp.Request, len(tools))
	for i, t := range tools {
		name, _ := t["name"].(string)
		reqs[i] = p.request(json.RawMessage(`"tools/list"`), &callParams{Name: name})
	}
	ds, err := p.Client.AuthorizeBatch(ctx, reqs)
	if err != nil {
		p.Logger.Error("filter tools/list; hiding every tool", "err", err)
		ds = nil
	}
	kept := []map[string]any{}
	for i, t := range tools {
		if ds != nil && ds[i].Decision != pdp.Deny {
			kept = append(kept, t)
		}
	}
	result["tools"], _ = json.Marshal(kept)
	m.Result, _ = json.Marshal(result)
	out, err := json.Marshal(m)
	if err != nil {
		return line
	}
	return out
}
