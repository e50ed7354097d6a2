package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cedar-policy/cedar-go"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/policy"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// explained is one decision with what a reviewer needs around it: what
// `agentpdp log show` prints, and the policy files with the deciding lines
// marked.
type explained struct {
	Entry        *decisionlog.Entry
	Record       wire.DecisionRecord
	RequestJSON  string // the request as logged, indented
	Outcomes     []outcomeView
	Approvals    []approvalView // answers to this decision, if it was step_up
	ApprovalUsed *approvalView  // the approval this decision was allowed by
	Deciding     []decidingPolicy
	Files        []policyFileView // the files the deciding policies are in, lines marked
	StepUpWhy    []string         // the @step_up texts of the deciding policies
	Facts        []fact           // each fact with its source
	Extra        []extraField     // fields of the row this console does not know by name
	NoLoad       bool             // the log holds no load of the policy version
}

type outcomeView struct {
	Entry  *decisionlog.Entry
	Record wire.OutcomeRecord
	Detail string
}

type approvalView struct {
	Entry  *decisionlog.Entry
	Record wire.ApprovalRecord
}

type decidingPolicy struct {
	ID, Effect, File string
	Line             int
	Text             string
	Error            string // the evaluation error, for a policy that errored
	Builtin          bool
	Detail           string
}

type policyFileView struct {
	Path  string
	Lines []policyLine
}

type policyLine struct {
	N       int
	Text    string
	Marked  bool   // part of a deciding policy
	Starts  string // the id of the deciding policy starting here
	FirstOf bool
}

// fact is one thing the decision relied on and where it came from, in the
// terms of DESIGN.md's "Evidence, not claims": verified, attested, trusted
// or claimed.
type fact struct {
	Name, Value, Source string
}

type extraField struct {
	Name, JSON string
}

// knownFields are the decision record's members shown by name elsewhere.
var knownFields = map[string]bool{
	"decision_id": true, "decision": true, "principal": true, "action": true, "resource": true,
	"classification": true, "reasons": true, "errors": true, "policy_version": true, "on_error": true,
	"approval": true, "context_digest": true, "request": true, "masked": true, "provided_entities": true,
	"log_only": true, "shadow": true, "peer": true, "eval_ns": true,
}

func explain(ctx context.Context, r *decisionlog.Reader, id string) (*explained, error) {
	entry, err := r.Decision(ctx, id)
	if err != nil {
		return nil, err
	}
	return explainEntry(ctx, r, entry)
}

func explainEntry(ctx context.Context, r *decisionlog.Reader, entry *decisionlog.Entry) (*explained, error) {
	x := &explained{Entry: entry}
	if err := json.Unmarshal(entry.Body, &x.Record); err != nil {
		return nil, fmt.Errorf("decision at seq %d: %w", entry.Seq, err)
	}
	id := x.Record.DecisionID
	if x.Record.Request != nil {
		x.RequestJSON = indentJSON(mustJSON(x.Record.Request))
	}
	var err error
	if x.Outcomes, x.Approvals, err = afterDecision(ctx, r, id); err != nil {
		return nil, err
	}
	if used := x.Record.Approval; used != nil {
		as, err := r.Query(ctx, decisionlog.Filter{Kinds: []decisionlog.Kind{pdp.KindApproval}, DecisionID: used.ID, Limit: 1})
		if err != nil {
			return nil, err
		}
		if len(as) > 0 {
			var a approvalView
			a.Entry = as[0]
			if json.Unmarshal(as[0].Body, &a.Record) == nil {
				x.ApprovalUsed = &a
			}
		}
	}
	load, err := r.PolicyLoad(ctx, x.Record.PolicyVersion)
	if err != nil && !errors.Is(err, decisionlog.ErrNotFound) {
		return nil, err
	}
	var files []policy.PolicyFile
	if load != nil {
		var rec pdp.PolicyLoadRecord
		if err := json.Unmarshal(load.Body, &rec); err != nil {
			return nil, fmt.Errorf("policy load seq %d: %w", load.Seq, err)
		}
		files = rec.Files
	} else {
		x.NoLoad = true
	}
	for _, rs := range x.Record.Reasons {
		if rs.Builtin {
			x.Deciding = append(x.Deciding, decidingPolicy{ID: rs.Policy, Builtin: true, Detail: rs.Detail})
			continue
		}
		text, _ := policy.PolicyText(files, rs.File, rs.Line)
		x.Deciding = append(x.Deciding, decidingPolicy{ID: rs.Policy, Effect: rs.Effect, File: rs.File, Line: rs.Line, Text: text})
		if why := rs.Annotations["step_up"]; why != "" {
			x.StepUpWhy = append(x.StepUpWhy, why)
		}
	}
	for _, e := range x.Record.Errors {
		text, _ := policy.PolicyText(files, e.File, e.Line)
		x.Deciding = append(x.Deciding, decidingPolicy{ID: e.Policy, Effect: e.Effect, File: e.File, Line: e.Line, Text: text, Error: e.Message})
	}
	x.Files = markedFiles(files, x.Deciding)
	x.Facts = facts(&x.Record)
	x.Extra = extraFields(entry.Body)
	return x, nil
}

// afterDecision returns the outcomes and approvals recorded for decision
// id, oldest first.
func afterDecision(ctx context.Context, r *decisionlog.Reader, id string) ([]outcomeView, []approvalView, error) {
	related, err := r.Query(ctx, decisionlog.Filter{Kinds: []decisionlog.Kind{pdp.KindOutcome, pdp.KindApproval}, DecisionID: id, Limit: 1000})
	if err != nil {
		return nil, nil, err
	}
	var outcomes []outcomeView
	var approvals []approvalView
	for i := len(related) - 1; i >= 0; i-- { // Query returns newest first
		e := related[i]
		if e.Kind == pdp.KindOutcome {
			o := outcomeView{Entry: e}
			if json.Unmarshal(e.Body, &o.Record) == nil {
				if len(o.Record.Detail) > 0 {
					o.Detail = string(o.Record.Detail)
				}
				outcomes = append(outcomes, o)
			}
			continue
		}
		a := approvalView{Entry: e}
		if json.Unmarshal(e.Body, &a.Record) == nil {
			approvals = append(approvals, a)
		}
	}
	return outcomes, approvals, nil
}

// markedFiles returns the files that hold deciding policies, every line
// numbered, the lines of the deciding policies marked.
func markedFiles(files []policy.PolicyFile, deciding []decidingPolicy) []policyFileView {
	var out []policyFileView
	for _, f := range files {
		var mine []decidingPolicy
		for _, d := range deciding {
			if !d.Builtin && d.File == f.Path {
				mine = append(mine, d)
			}
		}
		if len(mine) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(f.Content, "\n"), "\n")
		view := policyFileView{Path: f.Path, Lines: make([]policyLine, len(lines))}
		for i, l := range lines {
			view.Lines[i] = policyLine{N: i + 1, Text: l}
		}
		spans := policySpans(f, len(lines))
		for _, d := range mine {
			end, ok := spans[d.Line]
			if !ok {
				end = d.Line
			}
			for n := d.Line; n <= end && n <= len(lines); n++ {
				view.Lines[n-1].Marked = true
			}
			if d.Line >= 1 && d.Line <= len(lines) {
				view.Lines[d.Line-1].Starts = d.ID
			}
		}
		out = append(out, view)
	}
	return out
}

// policySpans maps each policy's first line in f to its last: the line
// before the next policy starts, less trailing blank and comment lines.
func policySpans(f policy.PolicyFile, nlines int) map[int]int {
	list, err := cedar.NewPolicyListFromBytes(f.Path, []byte(f.Content))
	if err != nil {
		return nil
	}
	lines := strings.Split(f.Content, "\n")
	var starts []int
	for _, p := range list {
		starts = append(starts, p.Position().Line)
	}
	slices.Sort(starts)
	spans := map[int]int{}
	for i, s := range starts {
		end := nlines
		if i+1 < len(starts) {
			end = starts[i+1] - 1
		}
		for end > s {
			t := strings.TrimSpace(lines[end-1])
			if t != "" && !strings.HasPrefix(t, "//") && !strings.HasPrefix(t, "@") {
				break
			}
			end--
		}
		spans[s] = end
	}
	return spans
}

// facts lists what the decision relied on, each with its source. The
// kernel's view of the caller is attested; the principal, context and
// inline entities come from the request and are claims unless a verified
// identity in the row says otherwise; entities from providers are trusted.
func facts(rec *wire.DecisionRecord) []fact {
	var out []fact
	add := func(name, value, source string) {
		if value != "" {
			out = append(out, fact{name, value, source})
		}
	}
	if p := rec.Peer; p != nil {
		add("caller", fmt.Sprintf("pid %d, uid %d, gid %d, %s", p.PID, p.UID, p.GID, orDash(p.Exe)), "attested (kernel, SO_PEERCRED)")
	} else {
		add("caller", "not a Unix socket peer", "none")
	}
	// context.identity and context.caller are the daemon's to set (a request
	// may set neither): a verified token, and the caller as bound by the
	// kernel's view and the callers rules.
	var ctxFacts struct {
		Identity *struct {
			Verified bool     `json:"verified"`
			Issuer   string   `json:"issuer"`
			Subject  string   `json:"subject"`
			SPIFFEID string   `json:"spiffe_id"`
			Scopes   []string `json:"scopes"`
			Actors   []string `json:"actors"`
		} `json:"identity"`
		Caller json.RawMessage `json:"caller"`
	}
	if rec.Request != nil && len(rec.Request.Context) > 0 {
		json.Unmarshal(rec.Request.Context, &ctxFacts)
	}
	principalSource := "claimed (request)"
	if id := ctxFacts.Identity; id != nil {
		v := strings.TrimSpace(strings.Join([]string{id.Subject, id.SPIFFEID}, " "))
		if id.Issuer != "" {
			v += ", issued by " + id.Issuer
		}
		if len(id.Scopes) > 0 {
			v += ", scopes " + strings.Join(id.Scopes, " ")
		}
		if len(id.Actors) > 0 {
			v += ", acting: " + strings.Join(id.Actors, " → ")
		}
		source := "not verified"
		if id.Verified {
			source = "verified (token checked by the daemon)"
			principalSource = "verified (bound to the token)"
		}
		add("identity", v, source)
	}
	if len(ctxFacts.Caller) > 0 {
		add("caller binding", string(ctxFacts.Caller), "attested (kernel, callers rules)")
	}
	add("principal", rec.Principal, principalSource)
	if req := rec.Request; req != nil {
		add("on behalf of", req.OnBehalfOf, "claimed (request)")
		if c := req.Credential; c != nil {
			cred := c.ID
			if c.Issuer != "" {
				cred += ", issued by " + c.Issuer
			}
			if c.Subject != "" {
				cred += " to " + c.Subject
			}
			if len(c.Scopes) > 0 {
				cred += ", scopes " + strings.Join(c.Scopes, " ")
			}
			if c.ExpiresAt != nil {
				cred += ", expires " + c.ExpiresAt.UTC().Format("2006-01-02 15:04:05Z")
			}
			add("credential", cred, "claimed (request)")
		}
		for _, e := range req.Entities {
			add("entity", string(mustJSON(e.UID)), "claimed (request, inline)")
		}
	}
	for _, e := range rec.Provided {
		add("entity", string(mustJSON(e.UID)), "trusted (entity provider)")
	}
	return out
}

// extraFields returns the row's members this console does not show by
// name, such as the sources of identity facts recorded by newer daemons.
func extraFields(body []byte) []extraField {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return nil
	}
	var out []extraField
	for k, v := range m {
		if !knownFields[k] {
			out = append(out, extraField{k, indentJSON(v)})
		}
	}
	slices.SortFunc(out, func(a, b extraField) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte(fmt.Sprintf("(unencodable: %v)", err))
	}
	return b
}

func indentJSON(b []byte) string {
	var out bytes.Buffer
	if json.Indent(&out, b, "", "  ") != nil {
		return string(b)
	}
	return out.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// chainNode is a decision in a tree of tool calls, with what followed it.
type chainNode struct {
	Entry     *decisionlog.Entry
	Record    wire.DecisionRecord
	Outcomes  []outcomeView
	Approvals []approvalView
	Children  []*chainNode // calls it led to, and retries its approval allowed
	Focus     bool
}

const maxChain = 2000 // nodes: a bound on what one page reads

// chain returns the tree around decision id: up by parent_decision_id (and
// the approval a retry used) to the first decision, then everything below.
func chain(ctx context.Context, r *decisionlog.Reader, id string) (*chainNode, int, error) {
	entry, err := r.Decision(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	seen := map[string]bool{id: true}
	for range maxChain {
		var rec wire.DecisionRecord
		if err := json.Unmarshal(entry.Body, &rec); err != nil {
			return nil, 0, err
		}
		up := ""
		if rec.Request != nil {
			up = rec.Request.ParentDecisionID
			if up == "" {
				up = rec.Request.Approval
			}
		}
		if up == "" || seen[up] {
			break
		}
		parent, err := r.Decision(ctx, up)
		if err != nil {
			break // the parent is outside this log (another host, or pruned)
		}
		seen[up] = true
		entry = parent
	}
	seen = map[string]bool{}
	root, err := buildChain(ctx, r, entry, id, seen)
	return root, len(seen), err
}

func buildChain(ctx context.Context, r *decisionlog.Reader, e *decisionlog.Entry, focus string, seen map[string]bool) (*chainNode, error) {
	n := &chainNode{Entry: e}
	if err := json.Unmarshal(e.Body, &n.Record); err != nil {
		return nil, err
	}
	id := n.Record.DecisionID
	n.Focus = id == focus
	seen[id] = true
	var err error
	if n.Outcomes, n.Approvals, err = afterDecision(ctx, r, id); err != nil {
		return nil, err
	}
	var children []*decisionlog.Entry
	for _, f := range []decisionlog.Filter{{ParentDecisionID: id}, {ApprovalID: id}} {
		f.Kinds, f.Limit = []decisionlog.Kind{decisionlog.KindDecision}, 1000
		cs, err := r.Query(ctx, f)
		if err != nil {
			return nil, err
		}
		children = append(children, cs...)
	}
	slices.SortFunc(children, func(a, b *decisionlog.Entry) int { return int(a.Seq - b.Seq) })
	for _, c := range children {
		var cr wire.DecisionRecord
		if json.Unmarshal(c.Body, &cr) != nil || seen[cr.DecisionID] || len(seen) >= maxChain {
			continue
		}
		child, err := buildChain(ctx, r, c, focus, seen)
		if err != nil {
			return nil, err
		}
		n.Children = append(n.Children, child)
	}
	return n, nil
}
