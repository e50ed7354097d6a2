// Package mcpproxy enforces agentpdp decisions on Model Context Protocol tool
// calls. It sits between an MCP client and an MCP server on the stdio
// transport (newline-delimited JSON-RPC 2.0). Every message is read once,
// strictly (see docs/mcp-proxy.md), and what is forwarded is the re-encoded
// message that was read, never the line as received. tools/call is
// authorized first: a deny or step_up is answered with a JSON-RPC error and
// never reaches the server, and the outcome of an allowed call is recorded
// when it ends (answered, cancelled, its task finished, or its server gone).
package mcpproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// JSON-RPC error codes the proxy answers with: JSON-RPC's own for messages
// it cannot read, and the implementation-defined server error range for
// decisions.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeInvalidParams  = -32602
	CodeInternal       = -32603
	CodeDenied         = -32001
	CodeStepUp         = -32002
	CodeUnavailable    = -32003
)

// MetaApproval is the _meta key of a tools/call that retries a step_up with
// its approval: {"_meta": {"agentpdp/approval": "<decision id>"}}.
const MetaApproval = "agentpdp/approval"

// Proxy authorizes the tool calls of one principal against one MCP server.
// Set the exported fields, then call Run once.
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

	MaxLineBytes int // longest message relayed; default DefaultMaxLineBytes
	MaxDepth     int // deepest nesting read; default DefaultMaxDepth

	outMu    sync.Mutex // one writer of the client's stream at a time
	out      io.Writer
	serverMu sync.Mutex // one writer of the server's stream at a time
	server   io.Writer

	mu       sync.Mutex
	calls    map[string]*call  // tools/call in flight, by id key
	tasks    map[string]*call  // task-augmented calls whose task runs, by taskId
	taskReqs map[string]string // id key of a client's tasks/* request → taskId
	lists    map[string]bool   // id keys of tools/list requests to filter
	elicit   bool              // the client declared the elicitation capability
	asked    map[string]chan *message
	nextAsk  int
	gone     bool          // the server's output ended: nothing more is forwarded
	goneCh   chan struct{} // closed when gone is set
	work     sync.WaitGroup
}

// call is one tools/call from the time it is read until its outcome.
type call struct {
	key        string
	id         jsontext.Value
	tool       string
	task       bool // asked for task augmentation
	decisionID string
	authorized chan struct{} // closed once it was forwarded or refused
	forwarded  bool
	recorded   bool // its outcome is logged (or it never ran)
}

// Run relays until the server's output ends. clientIn/clientOut face the
// MCP client; serverIn/serverOut face the server. When the client's input
// ends, serverIn is closed once the calls being authorized are settled, and
// the server's last answers still go through. When the server's output ends,
// every call still open gets an error and an outcome.
func (p *Proxy) Run(ctx context.Context, clientIn io.Reader, clientOut io.Writer, serverIn io.WriteCloser, serverOut io.Reader) error {
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	if p.MaxLineBytes <= 0 {
		p.MaxLineBytes = DefaultMaxLineBytes
	}
	if p.MaxDepth <= 0 {
		p.MaxDepth = DefaultMaxDepth
	}
	p.out, p.server = clientOut, serverIn
	p.calls, p.tasks, p.taskReqs, p.lists, p.asked = map[string]*call{}, map[string]*call{}, map[string]string{}, map[string]bool{}, map[string]chan *message{}
	p.goneCh = make(chan struct{})
	fromClient := make(chan error, 1)
	go func() {
		err := p.fromClient(ctx, clientIn)
		p.settle()
		serverIn.Close()
		fromClient <- err
	}()
	err := p.fromServer(ctx, serverOut)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	p.serverEnded(ctx)
	select {
	case cerr := <-fromClient:
		if !errors.Is(cerr, io.EOF) {
			err = errors.Join(err, cerr)
		}
	default: // the server ended first; the client side ends with our process
	}
	return err
}

// settle waits for the calls being authorized to be forwarded or refused.
func (p *Proxy) settle() { p.work.Wait() }

// goAsync runs fn as owned work unless the server is gone; it reports
// whether fn will run.
func (p *Proxy) goAsync(fn func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gone {
		return false
	}
	p.work.Go(fn)
	return true
}

func (p *Proxy) fromClient(ctx context.Context, in io.Reader) error {
	lr := newLineReader(in, p.MaxLineBytes)
	for {
		line, over, err := lr.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return io.EOF
			}
			return fmt.Errorf("read from client: %w", err)
		}
		if over != nil {
			p.clientOversize(ctx, over)
			continue
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		raw, err := canonical(line, p.MaxDepth)
		if err != nil {
			p.unparsable(ctx, line, err)
			continue
		}
		switch raw[0] {
		case '[':
			p.clientBatch(ctx, raw)
			continue
		case '{':
		default:
			p.reply(nil, CodeInvalidRequest, "invalid request: a JSON-RPC message must be a JSON object", nil)
			continue
		}
		m, err := parseMessage(raw)
		if err != nil {
			p.invalid(ctx, raw, err)
			continue
		}
		p.fromClientMessage(ctx, m)
	}
}

// unparsable answers a client's line that is not strict JSON, with its id
// if one can be read before the fault; if it reads as a tools/call, the
// refusal is logged as a deny.
func (p *Proxy) unparsable(ctx context.Context, line []byte, why error) {
	o := scanOversize(bytes.NewReader(line), int64(len(line)), p.MaxLineBytes)
	id := o.id
	if id.Kind() != '"' && id.Kind() != '0' {
		id = nil
	}
	p.reply(id, CodeParseError, "parse error: "+why.Error(), nil)
	if o.method == "tools/call" {
		params, _ := marshal(map[string]any{"name": o.tool})
		p.refuseCall(ctx, id, jsontext.Value(params), wire.ReasonRequestRefused, "parse error: "+why.Error())
	}
}

// invalid answers a client's object that is not a valid JSON-RPC message;
// if it reads as a tools/call, the refusal is logged as a deny.
func (p *Proxy) invalid(ctx context.Context, raw []byte, why error) {
	id := member(raw, "id")
	if id.Kind() != '"' && id.Kind() != '0' {
		id = nil
	}
	p.reply(id, CodeInvalidRequest, "invalid request: "+why.Error(), nil)
	if method := member(raw, "method"); method.Kind() == '"' && unquote(method) == "tools/call" {
		p.refuseCall(ctx, id, member(raw, "params"), wire.ReasonRequestRefused, "invalid request: "+why.Error())
	}
}

func (p *Proxy) fromClientMessage(ctx context.Context, m *message) {
	if m.isResponse() {
		if p.answered(m) {
			return // the client's answer to our elicitation, not for the server
		}
		p.forward(m)
		return
	}
	switch m.method {
	case "initialize":
		p.noteCapabilities(m)
	case "tools/call":
		p.startCall(ctx, m)
		return
	case "tools/list":
		if p.FilterTools && m.id != nil {
			if key, err := idKey(m.id); err == nil {
				p.mu.Lock()
				p.lists[key] = true
				p.mu.Unlock()
			}
		}
	case "notifications/cancelled":
		p.cancel(ctx, m)
		return
	case "tasks/get", "tasks/result", "tasks/cancel":
		p.noteTaskRequest(m)
	}
	p.forward(m)
}

// forward sends a client's message to the server; a request that cannot be
// sent is answered with an error.
func (p *Proxy) forward(m *message) bool {
	if err := p.toServer(m.raw); err != nil {
		if m.isRequest() {
			p.reply(m.id, CodeInternal, "the MCP server is not reachable: "+err.Error(), nil)
		}
		return false
	}
	return true
}

var errGone = errors.New("the MCP server has exited")

func (p *Proxy) toServer(raw []byte) error {
	p.serverMu.Lock()
	defer p.serverMu.Unlock()
	p.mu.Lock()
	gone := p.gone
	p.mu.Unlock()
	if gone {
		return errGone
	}
	if _, err := p.server.Write(append(raw, '\n')); err != nil {
		return fmt.Errorf("write to server: %w", err)
	}
	return nil
}

func (p *Proxy) send(line []byte) error {
	p.outMu.Lock()
	defer p.outMu.Unlock()
	if _, err := p.out.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("write to client: %w", err)
	}
	return nil
}

// reply sends the client a JSON-RPC error; a nil id is sent as null.
func (p *Proxy) reply(id jsontext.Value, code int, msg string, data map[string]any) {
	if err := p.send(errorMessage(id, code, msg, data)); err != nil {
		p.Logger.Error("answer client", "err", err)
	}
}

func errorMessage(id jsontext.Value, code int, msg string, data map[string]any) []byte {
	if id == nil {
		id = jsontext.Value("null")
	}
	e := map[string]any{"code": code, "message": msg}
	if data != nil {
		e["data"] = data
	}
	b, err := marshal(map[string]any{"jsonrpc": "2.0", "id": id, "error": e})
	if err != nil { // only our own values are here
		panic(err)
	}
	return b
}

func (p *Proxy) fromServer(ctx context.Context, in io.Reader) error {
	lr := newLineReader(in, p.MaxLineBytes)
	for {
		line, over, err := lr.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return io.EOF
			}
			return fmt.Errorf("read from server: %w", err)
		}
		if over != nil {
			p.serverUnreadable(ctx, over.id, over.method, fmt.Sprintf("the server's message of %d bytes exceeds the proxy's limit of %d bytes", over.size, p.MaxLineBytes))
			continue
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		raw, err := canonical(line, p.MaxDepth)
		if err != nil {
			o := scanOversize(bytes.NewReader(line), int64(len(line)), p.MaxLineBytes)
			p.serverUnreadable(ctx, o.id, o.method, "the server sent a message that is not valid JSON: "+err.Error())
			continue
		}
		out := raw
		if raw[0] == '[' { // a batch of answers: no MCP server sends one, but read each
			for _, el := range elements(raw) {
				if m, err := parseMessage(el); err == nil {
					p.fromServerMessage(ctx, m)
				}
			}
		} else if m, err := parseMessage(raw); err != nil {
			p.serverUnreadable(ctx, member(raw, "id"), unquote(member(raw, "method")), "the server sent an invalid JSON-RPC message: "+err.Error())
			continue
		} else {
			out = p.fromServerMessage(ctx, m)
		}
		if err := p.send(out); err != nil {
			return err
		}
	}
}

// serverUnreadable handles a server message the proxy will not relay: if it
// answered a request, the client gets an error for it instead, and a call's
// outcome is an error.
func (p *Proxy) serverUnreadable(ctx context.Context, id jsontext.Value, method, why string) {
	p.Logger.Warn("dropping a message from the server", "why", why)
	if method != "" || (id.Kind() != '"' && id.Kind() != '0') {
		return // a request or notification of the server's: nobody waits on it
	}
	key, err := idKey(id)
	if err != nil {
		return
	}
	p.mu.Lock()
	c := p.calls[key]
	p.mu.Unlock()
	if c != nil {
		p.finish(ctx, c, wire.OutcomeError, map[string]any{"error": why})
	}
	p.reply(id, CodeInternal, why, nil)
}

// serverEnded fails whatever still waits on the server.
func (p *Proxy) serverEnded(ctx context.Context) {
	p.serverMu.Lock() // no write is half done when gone is set
	p.mu.Lock()
	p.gone = true
	close(p.goneCh)
	var open []*call
	for _, c := range p.calls {
		if c.forwarded && !c.recorded {
			open = append(open, c)
		}
	}
	var tasks []*call
	for _, c := range p.tasks {
		if !c.recorded {
			tasks = append(tasks, c)
		}
	}
	p.mu.Unlock()
	p.serverMu.Unlock()
	for _, c := range open {
		p.reply(c.id, CodeInternal, "the MCP server exited before answering", nil)
		p.finish(ctx, c, wire.OutcomeError, map[string]any{"error": "the MCP server exited before answering"})
	}
	for _, c := range tasks {
		p.finish(ctx, c, wire.OutcomeError, map[string]any{"error": "the MCP server exited before the task finished"})
	}
	p.settle()
}

// noteCapabilities remembers whether the client can be asked questions.
func (p *Proxy) noteCapabilities(m *message) {
	caps := member(member(m.params, "capabilities"), "elicitation")
	p.mu.Lock()
	p.elicit = caps != nil && p.Admin != nil
	p.mu.Unlock()
}
