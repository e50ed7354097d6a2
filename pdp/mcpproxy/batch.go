package mcpproxy

import (
	"bytes"
	"context"
	"fmt"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/agentpdp/agentpdp/pdp/wire"
)

// clientBatch handles a JSON-RPC batch (an array of messages). MCP has no
// batches since protocol 2025-06-18, so a batch is refused (-32600 for every
// request in it) unless every tools/call in it is allowed; then it is
// forwarded whole. Its calls are authorized in one round trip, with no
// elicitation: a step_up refuses the batch.
func (p *Proxy) clientBatch(ctx context.Context, raw []byte) {
	els := elements(raw)
	if len(els) == 0 {
		p.reply(nil, CodeInvalidRequest, "invalid request: an empty batch", nil)
		return
	}
	msgs := make([]*message, len(els))
	var why string
	var calls []*call
	var params []*callParams
	seen := map[string]bool{}
	for i, el := range els {
		m, err := parseMessage(el)
		if err == nil && m.method == "tools/call" {
			var cp *callParams
			var key string
			switch {
			case m.id == nil:
				err = fmt.Errorf("a tools/call without an id")
			default:
				if key, err = idKey(m.id); err == nil {
					cp, err = parseCallParams(m.params)
				}
			}
			if err == nil {
				p.mu.Lock()
				_, inFlight := p.calls[key]
				p.mu.Unlock()
				if inFlight || seen[key] {
					err = fmt.Errorf("id %s is already used by a call in flight", idText(key))
				}
				seen[key] = true
				calls = append(calls, &call{key: key, id: m.id, tool: cp.name, task: cp.task, authorized: make(chan struct{})})
				params = append(params, cp)
			}
		}
		if err != nil && why == "" {
			why = fmt.Sprintf("batch element %d: %v", i, err)
		}
		msgs[i] = m
	}
	var decided []*wire.Decision
	if why == "" && len(calls) > 0 {
		reqs := make([]*wire.Request, len(calls))
		for i, c := range calls {
			reqs[i] = p.request(c.key, params[i])
		}
		ds, err := p.Client.AuthorizeBatch(ctx, reqs)
		if err != nil {
			why = "agentpdp could not decide: " + err.Error()
		}
		decided = ds
		for i, d := range ds {
			if d.Decision != wire.Allow && why == "" {
				why = fmt.Sprintf("tool %s: %s by %s (decision %s)", calls[i].tool, d.Decision, policies(d), d.DecisionID)
			}
			calls[i].decisionID = d.DecisionID
		}
	}
	if why == "" {
		p.mu.Lock()
		for _, c := range calls {
			c.forwarded = true
			p.calls[c.key] = c
		}
		p.mu.Unlock()
		err := p.toServer(raw)
		for _, c := range calls {
			close(c.authorized)
			if err != nil {
				p.finish(ctx, c, wire.OutcomeSkipped, map[string]any{"error": "not sent: " + err.Error()})
			}
		}
		if err == nil {
			return
		}
		why = "the MCP server is not reachable: " + err.Error()
	}
	// Refused: every request in it gets an error; every call in it is a
	// logged deny (decided ones already are, and the allowed get skipped).
	for _, d := range decided {
		if d.Decision == wire.Allow {
			p.outcome(ctx, d.DecisionID, wire.OutcomeSkipped, map[string]any{"error": "refused with its batch: " + why})
		} else {
			p.outcome(ctx, d.DecisionID, wire.OutcomeSkipped, nil)
		}
	}
	var answers [][]byte
	for i, el := range els {
		m := msgs[i]
		id := member(el, "id")
		if id.Kind() != '"' && id.Kind() != '0' {
			id = nil
		}
		if decided == nil && unquote(member(el, "method")) == "tools/call" {
			p.refuseCall(ctx, id, member(el, "params"), wire.ReasonRequestRefused, "JSON-RPC batch refused: "+why)
		}
		if m == nil || m.isRequest() { // an invalid element is answered with its id or null
			answers = append(answers, errorMessage(id, CodeInvalidRequest, "JSON-RPC batch refused (MCP has no batches; one is forwarded only if every call in it is allowed): "+why, nil))
		}
	}
	if len(answers) == 0 {
		return
	}
	out := append([]byte{'['}, bytes.Join(answers, []byte{','})...)
	if err := p.send(append(out, ']')); err != nil {
		p.Logger.Error("answer client", "err", err)
	}
}

// clientOversize answers a client's line over the limit with an error for
// its id; a tools/call's refusal is logged as a deny, request_too_large.
func (p *Proxy) clientOversize(ctx context.Context, o *oversize) {
	why := fmt.Sprintf("message of %d bytes exceeds the proxy's limit of %d bytes", o.size, p.MaxLineBytes)
	id := o.id
	if id.Kind() != '"' && id.Kind() != '0' {
		id = nil
	}
	if o.method == "" || id != nil {
		p.reply(id, CodeInvalidRequest, "invalid request: "+why, nil)
	}
	if o.method == "tools/call" {
		params, _ := marshal(map[string]any{"name": o.tool})
		p.refuseCall(ctx, id, jsontext.Value(params), wire.ReasonRequestTooLarge, why)
	}
}
