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

	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/policy"
	"github.com/agentpdp/agentpdp/pdp/wire"
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
	Principal   wire.EntityRef
	Server      wire.EntityRef // the resource every call is on
	FilterTools bool           // drop from tools/list the tools the principal is denied
	Logger      *slog.Logger

	// Admin, if set, lets the proxy ask the user to approve a step_up through
	// MCP elicitation, when the client supports it, and record the answer as
	// the approval (as Approver). Without it a step_up is an error the client
	// must resolve on the admin socket.
	Admin    *client.Client
	Approver string

	outMu    sync.Mutex // one writer of the client's stream at a time
	out      io.Writer
	serverMu sync.Mutex // one writer of the server's stream at a time
	mu       sync.Mutex
	pending  map[string]string // JSON-RPC id → decision id, of allowed calls in flight
	lists    map[string]bool   // JSON-RPC ids of tools/list requests
	elicit   bool              // the client declared the elicitation capability
	asked    map[string]chan message
	nextAsk  int
	calls    sync.WaitGroup // tools/call handlers in flight
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
	p.out, p.pending, p.lists, p.asked = clientOut, map[string]string{}, map[string]bool{}, map[string]chan message{}
	fromClient := make(chan error, 1)
	go func() {
		err := p.fromClient(ctx, clientIn, serverIn)
		p.calls.Wait() // calls being authorized still go to the server
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
			if m.Method == "" && p.answered(&m) {
				continue // the client's answer to our elicitation, not for the server
			}
			switch m.Method {
			case "initialize":
				p.noteCapabilities(&m)
			case "tools/call":
				// Authorizing may wait for a human (elicitation), whose answer
				// arrives on this stream: decide in a goroutine of our own.
				p.calls.Add(1)
				go func() {
					defer p.calls.Done()
					if p.authorizeCall(ctx, &m) {
						p.toServer(server, line)
					}
				}()
				continue
			case "tools/list":
				if p.FilterTools {
					p.mu.Lock()
					p.lists[string(m.ID)] = true
					p.mu.Unlock()
				}
			}
		}
		if err := p.toServer(server, line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read from client: %w", err)
	}
	return io.EOF
}

func (p *Proxy) toServer(server io.Writer, line []byte) error {
	p.serverMu.Lock()
	defer p.serverMu.Unlock()
	if _, err := server.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("write to server: %w", err)
	}
	return nil
}

// noteCapabilities remembers whether the client can be asked questions.
func (p *Proxy) noteCapabilities(m *message) {
	var params struct {
		Capabilities map[string]json.RawMessage `json:"capabilities"`
	}
	if json.Unmarshal(m.Params, &params) == nil {
		_, ok := params.Capabilities["elicitation"]
		p.mu.Lock()
		p.elicit = ok && p.Admin != nil
		p.mu.Unlock()
	}
}

// answered delivers a response to a request the proxy sent the client.
func (p *Proxy) answered(m *message) bool {
	p.mu.Lock()
	ch, ok := p.asked[string(m.ID)]
	delete(p.asked, string(m.ID))
	p.mu.Unlock()
	if ok {
		ch <- *m
	}
	return ok
}

// askApproval asks the user, through the client, to approve a step_up. It
// reports whether the user answered, and the answer.
func (p *Proxy) askApproval(ctx context.Context, tool, why string, d *wire.Decision) (answered, approved bool) {
	p.mu.Lock()
	if !p.elicit {
		p.mu.Unlock()
		return false, false
	}
	p.nextAsk++
	id := fmt.Sprintf(`"agentpdp-approval-%d"`, p.nextAsk)
	ch := make(chan message, 1)
	p.asked[id] = ch
	p.mu.Unlock()
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": json.RawMessage(id), "method": "elicitation/create", "params": map[string]any{
		"message": fmt.Sprintf("%s wants to call %s on %s, which needs a human's approval: %s. Approve?", p.Principal, tool, p.Server, why),
		"requestedSchema": map[string]any{"type": "object", "required": []string{"approve"},
			"properties": map[string]any{"approve": map[string]any{"type": "boolean", "title": "Approve this call", "description": "decision " + d.DecisionID}}},
	}})
	if err := p.send(b); err != nil {
		return false, false
	}
	select {
	case answer := <-ch:
		var r struct {
			Action  string `json:"action"`
			Content struct {
				Approve bool `json:"approve"`
			} `json:"content"`
		}
		if len(answer.Error) > 0 || json.Unmarshal(answer.Result, &r) != nil {
			return false, false
		}
		switch r.Action {
		case "accept":
			return true, r.Content.Approve
		case "decline":
			return true, false
		}
		return false, false // cancel: no answer
	case <-ctx.Done():
		return false, false
	}
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
func (p *Proxy) request(id json.RawMessage, params *callParams) *wire.Request {
	args := params.Arguments
	if len(args) == 0 || string(args) == "null" {
		args = json.RawMessage("{}")
	}
	ctxJSON, _ := json.Marshal(map[string]json.RawMessage{"args": args})
	req := &wire.Request{
		Principal:  p.Principal,
		Action:     wire.EntityRef{Type: "Action", ID: params.Name},
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
	case wire.Allow:
		p.mu.Lock()
		p.pending[string(m.ID)] = d.DecisionID
		p.mu.Unlock()
		return true
	case wire.StepUp:
		why := "approval needed"
		for _, r := range d.Reasons {
			if s := r.Annotations[policy.AnnotationStepUp]; s != "" {
				why = s
			}
		}
		if answered, approved := p.askApproval(ctx, params.Name, why, d); answered {
			return p.recordAnswer(ctx, m, &params, d, approved)
		}
		p.reply(m.ID, CodeStepUp, fmt.Sprintf("tool %s needs a human's approval (%s): approve decision %s on agentpdp's admin socket, then retry with _meta %q", params.Name, why, d.DecisionID, MetaApproval), data)
	default:
		p.reply(m.ID, CodeDenied, fmt.Sprintf("tool %s denied by %s (decision %s)", params.Name, policies(d), d.DecisionID), data)
	}
	if _, err := p.Client.Outcome(ctx, d.DecisionID, wire.OutcomeSkipped, nil); err != nil {
		p.Logger.Warn("record skipped outcome", "decision_id", d.DecisionID, "err", err)
	}
	return false
}

// recordAnswer records the user's answer to a step_up as its approval and,
// if approved, asks again with it: the approval is checked like any other.
func (p *Proxy) recordAnswer(ctx context.Context, m *message, params *callParams, d *wire.Decision, approved bool) bool {
	if _, err := p.Admin.Approve(ctx, d.DecisionID, p.Approver, approved, "answered through the MCP client"); err != nil {
		p.Logger.Error("record approval; refusing the call", "decision_id", d.DecisionID, "err", err)
		p.reply(m.ID, CodeUnavailable, "tool call refused: the approval could not be recorded: "+err.Error(), nil)
		return false
	}
	if !approved {
		p.reply(m.ID, CodeDenied, fmt.Sprintf("tool %s: the user declined to approve it (decision %s)", params.Name, d.DecisionID),
			map[string]any{"decision_id": d.DecisionID, "decision": d.Decision, "reasons": d.Reasons})
		p.Client.Outcome(ctx, d.DecisionID, wire.OutcomeSkipped, nil)
		return false
	}
	if params.Meta == nil {
		params.Meta = map[string]any{}
	}
	params.Meta[MetaApproval] = d.DecisionID
	b, err := json.Marshal(params)
	if err != nil {
		return false
	}
	m.Params = b
	return p.authorizeCall(ctx, m)
}

func policies(d *wire.Decision) string {
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
	status, detail := wire.OutcomeSuccess, any(nil)
	var result struct {
		IsError bool `json:"isError"`
	}
	switch {
	case len(m.Error) > 0:
		status, detail = wire.OutcomeError, map[string]json.RawMessage{"error": m.Error}
	case json.Unmarshal(m.Result, &result) == nil && result.IsError:
		status, detail = wire.OutcomeError, map[string]string{"error": "the tool reported an error (isError)"}
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
	reqs := make([]*wire.Request, len(tools))
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
		if ds != nil && ds[i].Decision != wire.Deny {
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
