package mcpproxy

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/agentpdp/agentpdp/pdp/policy"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

func marshal(v any) ([]byte, error) { return json.Marshal(v, json.Deterministic(true)) }

// startCall checks a tools/call and authorizes it on a goroutine of its own:
// authorizing may wait for a human (elicitation), whose answer arrives on the
// client's stream. A call the proxy cannot read is refused, never forwarded,
// and logged as a deny.
func (p *Proxy) startCall(ctx context.Context, m *message) {
	if m.id == nil {
		p.refuseCall(ctx, nil, m.params, wire.ReasonRequestRefused, "a tools/call without an id (a notification) is never forwarded")
		return
	}
	key, err := idKey(m.id)
	if err != nil {
		p.reply(m.id, CodeInvalidRequest, "invalid request: "+err.Error(), nil)
		p.refuseCall(ctx, m.id, m.params, wire.ReasonRequestRefused, err.Error())
		return
	}
	cp, err := parseCallParams(m.params)
	if err != nil {
		p.reply(m.id, CodeInvalidParams, "invalid params: "+err.Error(), nil)
		p.refuseCall(ctx, m.id, m.params, wire.ReasonRequestRefused, "invalid params: "+err.Error())
		return
	}
	c := &call{key: key, id: m.id, tool: cp.name, task: cp.task, authorized: make(chan struct{})}
	p.mu.Lock()
	_, dup := p.calls[key]
	if !dup {
		p.calls[key] = c
	}
	p.mu.Unlock()
	if dup {
		why := fmt.Sprintf("id %s is already used by a call in flight", idText(key))
		p.reply(m.id, CodeInvalidRequest, "invalid request: "+why, nil)
		p.refuseCall(ctx, m.id, m.params, wire.ReasonRequestRefused, why)
		return
	}
	started := p.goAsync(func() {
		defer close(c.authorized)
		if !p.authorize(ctx, c, cp) {
			p.drop(c)
			return
		}
		p.mu.Lock()
		c.forwarded = true // before the write: the answer may come at once
		p.mu.Unlock()
		if err := p.toServer(m.raw); err != nil {
			p.reply(m.id, CodeInternal, "the MCP server is not reachable: "+err.Error(), nil)
			p.finish(ctx, c, wire.OutcomeSkipped, map[string]any{"error": "not sent: " + err.Error()})
		}
	})
	if !started {
		p.drop(c)
		close(c.authorized)
		p.reply(m.id, CodeInternal, "the MCP server has exited", nil)
	}
}

// drop forgets a call that was never forwarded.
func (p *Proxy) drop(c *call) {
	p.mu.Lock()
	if p.calls[c.key] == c {
		delete(p.calls, c.key)
	}
	p.mu.Unlock()
}

// request is the authorization request for a tool call: action
// Action::"<tool>", resource the server, the arguments as context.args, the
// JSON-RPC id as tool_call_id (as JSON: 7 or "7"), and the trace and session
// from _meta where the client sends them.
func (p *Proxy) request(idKey string, cp *callParams) *wire.Request {
	ctxJSON := make([]byte, 0, len(cp.args)+10)
	ctxJSON = append(append(append(ctxJSON, `{"args":`...), cp.args...), '}')
	req := &wire.Request{
		Principal: p.Principal,
		Action:    wire.EntityRef{Type: "Action", ID: cp.name},
		Resource:  p.Server,
		Context:   ctxJSON,
	}
	if idKey != "" {
		req.ToolCallID = idText(idKey)
	}
	if tp := cp.meta["traceparent"]; tp != "" {
		if parts := strings.Split(tp, "-"); len(parts) == 4 {
			req.TraceID = parts[1]
		}
	}
	if s := cp.meta["trace_id"]; s != "" {
		req.TraceID = s
	}
	req.SessionID = cp.meta["session_id"]
	req.Approval = cp.meta[MetaApproval]
	return req
}

// refuseCall logs a tools/call the proxy will not forward as a decision
// deny with the given built-in reason. It does not answer the client.
func (p *Proxy) refuseCall(ctx context.Context, id jsontext.Value, params jsontext.Value, reason, why string) {
	cp := &callParams{name: "tools/call", args: jsontext.Value("{}"), meta: map[string]string{}}
	if name := member(params, "name"); name.Kind() == '"' && unquote(name) != "" {
		cp.name = unquote(name)
	}
	if args := member(params, "arguments"); args.Kind() == '{' {
		cp.args = args
	}
	if meta := member(params, "_meta"); meta.Kind() == '{' {
		cp.meta = stringMembers(meta)
	}
	key := ""
	if id != nil {
		key, _ = idKey(id)
	}
	req := p.request(key, cp)
	req.Approval = "" // a refusal consumes no approval
	d, err := p.Client.Refuse(ctx, req, reason, why)
	if err != nil {
		p.Logger.Error("log a refused tool call", "tool", cp.name, "why", why, "err", err)
		return
	}
	p.Logger.Info("refused a tool call", "tool", cp.name, "why", why, "decision_id", d.DecisionID)
}

// authorize asks agentpdp about a tools/call and reports whether to forward
// it. Anything but allow is answered here, failing closed.
func (p *Proxy) authorize(ctx context.Context, c *call, cp *callParams) bool {
	d, err := p.Client.Authorize(ctx, p.request(c.key, cp))
	if err != nil {
		p.Logger.Error("authorize tool call; refusing it", "tool", cp.name, "err", err)
		p.reply(c.id, CodeUnavailable, "tool call refused: agentpdp could not decide: "+err.Error(), nil)
		return false
	}
	data := map[string]any{"decision_id": d.DecisionID, "decision": d.Decision, "reasons": d.Reasons}
	switch d.Decision {
	case wire.Allow:
		p.mu.Lock()
		c.decisionID = d.DecisionID
		p.mu.Unlock()
		return true
	case wire.StepUp:
		why := "approval needed"
		for _, r := range d.Reasons {
			if s := r.Annotations[policy.AnnotationStepUp]; s != "" {
				why = s
			}
		}
		if answered, approved := p.askApproval(ctx, cp.name, why, d); answered {
			return p.recordAnswer(ctx, c, cp, d, approved)
		}
		p.reply(c.id, CodeStepUp, fmt.Sprintf("tool %s needs a human's approval (%s): approve decision %s on agentpdp's admin socket, then retry with _meta %q", cp.name, why, d.DecisionID, MetaApproval), data)
	default:
		p.reply(c.id, CodeDenied, fmt.Sprintf("tool %s denied by %s (decision %s)", cp.name, policies(d), d.DecisionID), data)
	}
	p.outcome(ctx, d.DecisionID, wire.OutcomeSkipped, nil)
	return false
}

// recordAnswer records the user's answer to a step_up as its approval and,
// if approved, asks again with it: the approval is checked like any other.
func (p *Proxy) recordAnswer(ctx context.Context, c *call, cp *callParams, d *wire.Decision, approved bool) bool {
	if _, err := p.Admin.Approve(ctx, d.DecisionID, p.Approver, approved, "answered through the MCP client"); err != nil {
		p.Logger.Error("record approval; refusing the call", "decision_id", d.DecisionID, "err", err)
		p.reply(c.id, CodeUnavailable, "tool call refused: the approval could not be recorded: "+err.Error(), nil)
		return false
	}
	if !approved {
		p.reply(c.id, CodeDenied, fmt.Sprintf("tool %s: the user declined to approve it (decision %s)", cp.name, d.DecisionID),
			map[string]any{"decision_id": d.DecisionID, "decision": d.Decision, "reasons": d.Reasons})
		p.outcome(ctx, d.DecisionID, wire.OutcomeSkipped, nil)
		return false
	}
	cp.meta[MetaApproval] = d.DecisionID
	return p.authorize(ctx, c, cp)
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

// askApproval asks the user, through the client, to approve a step_up. It
// reports whether the user answered, and the answer.
func (p *Proxy) askApproval(ctx context.Context, tool, why string, d *wire.Decision) (answered, approved bool) {
	p.mu.Lock()
	if !p.elicit {
		p.mu.Unlock()
		return false, false
	}
	p.nextAsk++
	id := fmt.Sprintf("agentpdp-approval-%d", p.nextAsk)
	ch := make(chan *message, 1)
	p.asked["s"+id] = ch
	p.mu.Unlock()
	b, err := marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": "elicitation/create", "params": map[string]any{
		"message": fmt.Sprintf("%s wants to call %s on %s, which needs a human's approval: %s. Approve?", p.Principal, tool, p.Server, why),
		"requestedSchema": map[string]any{"type": "object", "required": []string{"approve"},
			"properties": map[string]any{"approve": map[string]any{"type": "boolean", "title": "Approve this call", "description": "decision " + d.DecisionID}}},
	}})
	if err != nil || p.send(b) != nil {
		return false, false
	}
	select {
	case answer := <-ch:
		if answer.err != nil || answer.result.Kind() != '{' {
			return false, false
		}
		switch unquote(member(answer.result, "action")) {
		case "accept":
			return true, string(member(member(answer.result, "content"), "approve")) == "true"
		case "decline":
			return true, false
		}
		return false, false // cancel: no answer
	case <-ctx.Done():
		return false, false
	case <-p.goneCh:
		return false, false
	}
}

// answered delivers a response to a request the proxy sent the client.
func (p *Proxy) answered(m *message) bool {
	key, err := idKey(m.id)
	if err != nil {
		return false
	}
	p.mu.Lock()
	ch, ok := p.asked[key]
	delete(p.asked, key)
	p.mu.Unlock()
	if ok {
		ch <- m
	}
	return ok
}

// cancel relays notifications/cancelled after the call it names: a call
// still being authorized is forwarded (or refused) first, and a call that
// never reached the server is not cancelled there. The call's outcome is an
// error that says it was cancelled, whatever the server does next (MCP
// servers do not answer a cancelled request).
func (p *Proxy) cancel(ctx context.Context, m *message) {
	reqID := member(m.params, "requestId")
	key, err := idKey(reqID)
	if err != nil || key == "" {
		p.forward(m)
		return
	}
	p.mu.Lock()
	c := p.calls[key]
	p.mu.Unlock()
	if c == nil {
		p.forward(m)
		return
	}
	reason := unquote(member(m.params, "reason"))
	relay := func() {
		p.mu.Lock()
		forwarded := c.forwarded
		p.mu.Unlock()
		if !forwarded {
			return // refused: the server never saw the call
		}
		p.forward(m)
		detail := map[string]any{"cancelled": true}
		if reason != "" {
			detail["reason"] = reason
		}
		p.finish(ctx, c, wire.OutcomeError, detail)
	}
	select {
	case <-c.authorized:
		relay()
	default:
		if !p.goAsync(func() { <-c.authorized; relay() }) {
			relay()
		}
	}
}

// finish records a call's outcome once, and forgets the call.
func (p *Proxy) finish(ctx context.Context, c *call, status string, detail any) {
	p.mu.Lock()
	if c.recorded {
		p.mu.Unlock()
		return
	}
	c.recorded = true
	if p.calls[c.key] == c {
		delete(p.calls, c.key)
	}
	for id, tc := range p.tasks {
		if tc == c {
			delete(p.tasks, id)
		}
	}
	decisionID := c.decisionID
	p.mu.Unlock()
	if decisionID != "" {
		p.outcome(ctx, decisionID, status, detail)
	}
}

func (p *Proxy) outcome(ctx context.Context, decisionID, status string, detail any) {
	if _, err := p.Client.Outcome(context.WithoutCancel(ctx), decisionID, status, detail); err != nil {
		p.Logger.Warn("record outcome", "decision_id", decisionID, "status", status, "err", err)
	}
}

// resultOutcome is the outcome of a CallToolResult or a JSON-RPC error.
func resultOutcome(m *message) (string, any) {
	if m.err != nil {
		return wire.OutcomeError, map[string]any{"error": m.err}
	}
	if string(member(m.result, "isError")) == "true" {
		return wire.OutcomeError, map[string]any{"error": "the tool reported an error (isError)"}
	}
	return wire.OutcomeSuccess, nil
}

// fromServerMessage notes what a server's message ends (a call, a task) and
// returns the bytes to relay.
func (p *Proxy) fromServerMessage(ctx context.Context, m *message) []byte {
	if m.method == "notifications/tasks/status" {
		p.taskStatus(ctx, m.params)
		return m.raw
	}
	if !m.isResponse() {
		return m.raw
	}
	key, err := idKey(m.id)
	if err != nil || key == "" {
		return m.raw
	}
	p.mu.Lock()
	c := p.calls[key]
	listing := p.lists[key]
	delete(p.lists, key)
	taskID, taskReq := p.taskReqs[key]
	delete(p.taskReqs, key)
	p.mu.Unlock()
	switch {
	case c != nil && c.forwarded:
		var task jsontext.Value
		if c.task && m.err == nil {
			task = member(m.result, "task")
		}
		if task.Kind() == '{' {
			// CreateTaskResult: the call runs on as a task; its outcome is
			// recorded when the task reaches a terminal state.
			id := unquote(member(task, "taskId"))
			p.mu.Lock()
			if p.calls[key] == c {
				delete(p.calls, key)
			}
			p.tasks[id] = c
			p.mu.Unlock()
			p.taskStatus(ctx, task)
			return m.raw
		}
		status, detail := resultOutcome(m)
		p.finish(ctx, c, status, detail)
	case listing:
		return p.filterTools(ctx, m)
	case taskReq:
		p.taskAnswer(ctx, taskID, m)
	}
	return m.raw
}

// noteTaskRequest remembers a client's tasks/get, tasks/result or
// tasks/cancel about one of the tasks of its calls, to read the answer.
func (p *Proxy) noteTaskRequest(m *message) {
	taskID := unquote(member(m.params, "taskId"))
	key, err := idKey(m.id)
	if err != nil || key == "" || taskID == "" {
		return
	}
	p.mu.Lock()
	if _, ours := p.tasks[taskID]; ours {
		p.taskReqs[key] = m.method + "\x00" + taskID
	}
	p.mu.Unlock()
}

// taskAnswer reads the server's answer to a tasks/* request: tasks/result
// carries the call's own result; tasks/get and tasks/cancel the task.
func (p *Proxy) taskAnswer(ctx context.Context, req string, m *message) {
	method, taskID, _ := strings.Cut(req, "\x00")
	p.mu.Lock()
	c := p.tasks[taskID]
	p.mu.Unlock()
	if c == nil {
		return
	}
	if method == "tasks/result" {
		status, detail := resultOutcome(m)
		if detail == nil {
			detail = map[string]any{"task_id": taskID}
		}
		p.finish(ctx, c, status, detail)
		return
	}
	if m.err == nil {
		p.taskStatus(ctx, m.result)
	}
}

// taskStatus records the outcome of a task that reached a terminal state:
// completed is success, failed and cancelled are errors.
func (p *Proxy) taskStatus(ctx context.Context, task jsontext.Value) {
	taskID := unquote(member(task, "taskId"))
	p.mu.Lock()
	c := p.tasks[taskID]
	p.mu.Unlock()
	if c == nil {
		return
	}
	detail := map[string]any{"task_id": taskID}
	if msg := member(task, "statusMessage"); msg.Kind() == '"' {
		detail["status_message"] = unquote(msg)
	}
	switch status := unquote(member(task, "status")); status {
	case "completed":
		p.finish(ctx, c, wire.OutcomeSuccess, detail)
	case "failed", "cancelled":
		detail["status"] = status
		p.finish(ctx, c, wire.OutcomeError, detail)
	}
}

// filterTools drops from a tools/list result the tools the principal is
// denied when calling them with no arguments: the tools it may ever call.
// Each check is a logged decision, like any other.
func (p *Proxy) filterTools(ctx context.Context, m *message) []byte {
	tools := member(m.result, "tools")
	if m.err != nil || tools.Kind() != '[' {
		return m.raw
	}
	list := elements(tools)
	if len(list) == 0 {
		return m.raw
	}
	reqs := make([]*wire.Request, len(list))
	for i, t := range list {
		reqs[i] = p.request("", &callParams{name: unquote(member(t, "name")), args: jsontext.Value("{}")})
		reqs[i].ToolCallID = `"tools/list"`
	}
	ds, err := p.Client.AuthorizeBatch(ctx, reqs)
	if err != nil {
		p.Logger.Error("filter tools/list; hiding every tool", "err", err)
		ds = nil
	}
	var kept bytes.Buffer
	kept.WriteByte('[')
	for i, t := range list {
		if ds != nil && ds[i].Decision != wire.Deny {
			if kept.Len() > 1 {
				kept.WriteByte(',')
			}
			kept.Write(t)
		}
	}
	kept.WriteByte(']')
	result := replaceMember(m.result, "tools", kept.Bytes())
	return replaceMember(m.raw, "result", result)
}

// replaceMember returns obj, canonical, with member name's value replaced.
func replaceMember(obj jsontext.Value, name string, v []byte) []byte {
	var out bytes.Buffer
	enc := jsontext.NewEncoder(&out)
	dec := jsontext.NewDecoder(bytes.NewBuffer(obj))
	dec.ReadToken()
	enc.WriteToken(jsontext.BeginObject)
	for dec.PeekKind() != '}' {
		n, err := dec.ReadToken()
		if err != nil {
			break
		}
		ns := n.String() // n is valid only until the next read
		val, err := dec.ReadValue()
		if err != nil {
			break
		}
		enc.WriteToken(jsontext.String(ns))
		if ns == name {
			val = v
		}
		enc.WriteValue(val)
	}
	enc.WriteToken(jsontext.EndObject)
	return bytes.TrimSuffix(out.Bytes(), []byte("\n"))
}
