package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
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
	Guessed      bool             // the row predates recorded sources: Facts' sources are the console's reading
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
	"log_only": true, "shadow": true, "peer": true, "eval_ns": true, "evidence": true,
}

func explain(ctx context.Context, r *decisionlog.Reader, id string) (*explained, error) {
	x, err := pdp.Explain(ctx, r, id)
	if err != nil {
		return nil, err
	}
	return viewOf(x), nil
}

func explainEntry(ctx context.Context, r *decisionlog.Reader, entry *decisionlog.Entry) (*explained, error) {
	x, err := pdp.ExplainEntry(ctx, r, entry)
	if err != nil {
		return nil, err
	}
	return viewOf(x), nil
}

// viewOf adds to an explanation what the pages show: the rows decoded, the
// files with the deciding lines marked, each fact's source.
func viewOf(px *pdp.Explanation) *explained {
	x := &explained{Entry: px.Entry, Record: px.Record, NoLoad: px.Files == nil}
	if x.Record.Request != nil {
		x.RequestJSON = indentJSON(mustJSON(x.Record.Request))
	}
	x.Outcomes, x.Approvals = outcomeViews(px.Outcomes), approvalViews(px.Approvals)
	if px.ApprovalUsed != nil {
		if as := approvalViews([]*decisionlog.Entry{px.ApprovalUsed}); len(as) == 1 {
			x.ApprovalUsed = &as[0]
		}
	}
	for _, rs := range x.Record.Reasons {
		if rs.Builtin {
			x.Deciding = append(x.Deciding, decidingPolicy{ID: rs.Policy, Builtin: true, Detail: rs.Detail})
		}
		if why := rs.Annotations["step_up"]; why != "" {
			x.StepUpWhy = append(x.StepUpWhy, why)
		}
	}
	for _, p := range px.Policies {
		d := decidingPolicy{ID: p.ID, Effect: p.Effect, File: p.File, Line: p.Line, Error: p.Error}
		if p.Found {
			d.Text = p.Text
		}
		x.Deciding = append(x.Deciding, d)
	}
	x.Files = markedFiles(px.Files, x.Deciding)
	if x.Record.Evidence != nil {
		x.Facts = evidenceFacts(&x.Record)
	} else {
		x.Facts, x.Guessed = facts(&x.Record), true
	}
	x.Extra = extraFields(px.Entry.Body)
	return x
}

func outcomeViews(es []*decisionlog.Entry) []outcomeView {
	var out []outcomeView
	for _, e := range es {
		o := outcomeView{Entry: e}
		if json.Unmarshal(e.Body, &o.Record) == nil {
			if len(o.Record.Detail) > 0 {
				o.Detail = string(o.Record.Detail)
			}
			out = append(out, o)
		}
	}
	return out
}

func approvalViews(es []*decisionlog.Entry) []approvalView {
	var out []approvalView
	for _, e := range es {
		a := approvalView{Entry: e}
		if json.Unmarshal(e.Body, &a.Record) == nil {
			out = append(out, a)
		}
	}
	return out
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

// evidenceFacts lists what the decision relied on with the source the row
// records for each (wire.Evidence, written by the trust boundary since
// issue 13): verified, attested, trusted or claimed. It shows what
// `agentpdp log show` prints under "Sources of the facts".
func evidenceFacts(rec *wire.DecisionRecord) []fact {
	ev := rec.Evidence
	var out []fact
	add := func(name, value, source string) {
		if source != "" {
			out = append(out, fact{name, value, source})
		}
	}
	if p := rec.Peer; p != nil {
		caller := fmt.Sprintf("pid %d, uid %d, gid %d, %s", p.PID, p.UID, p.GID, orDash(p.Exe))
		if p.Cgroup != "" {
			caller += ", cgroup " + p.Cgroup
		}
		add("caller", caller, orDash(ev.Caller))
	} else {
		add("caller", "not a Unix socket peer", "none")
	}
	add("principal", rec.Principal, ev.Principal)
	add("principal's entity", rec.Principal, pdp.EntitySource(ev.PrincipalEntity))
	add("resource's entity", rec.Resource, pdp.EntitySource(ev.ResourceEntity))
	if req := rec.Request; req != nil {
		if c := req.Credential; c != nil {
			add("credential", credentialText(c), ev.Credential)
		}
		if req.OnBehalfOf != "" {
			add("on behalf of", req.OnBehalfOf, ev.OnBehalfOf)
		}
		if len(req.Context) > 2 {
			add("context", string(req.Context), ev.Context)
		}
	}
	for _, uid := range slices.Sorted(maps.Keys(ev.Entities)) {
		add("entity", uid, ev.Entities[uid])
	}
	if f := ev.Identity; f != nil {
		if f.Verified {
			id := pdp.TokenHolder(f)
			if len(f.Scopes) > 0 {
				id += ", scopes " + strings.Join(f.Scopes, " ")
			}
			add("token", id, "verified")
			if chain := pdp.DelegationChain(f); chain != "" {
				add("delegation", chain, "verified")
			}
		} else {
			add("token", "refused: "+f.Error, "claimed")
		}
		add("token thumbprint", f.TokenSHA256, "-")
	}
	if rec.SharedIdentity {
		add("shared identity", "another executable or uid used this principal recently", "attested")
	}
	return out
}

func credentialText(c *wire.Credential) string {
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
	return cred
}

// facts lists what the decision relied on, each with its source, for rows
// written before the row recorded sources (no evidence member). The
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
			add("credential", credentialText(c), "claimed (request)")
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
// name, such as members added by newer daemons.
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

// chain returns the tree around decision id (see [pdp.Chain]) and how
// many decisions it holds.
func chain(ctx context.Context, r *decisionlog.Reader, id string) (*chainNode, int, error) {
	root, err := pdp.Chain(ctx, r, id)
	if err != nil {
		return nil, 0, err
	}
	n := 0
	var conv func(*pdp.ChainNode) *chainNode
	conv = func(p *pdp.ChainNode) *chainNode {
		n++
		c := &chainNode{Entry: p.Decision, Record: p.Record, Outcomes: outcomeViews(p.Outcomes), Approvals: approvalViews(p.Approvals),
			Focus: p.Record.DecisionID == id}
		for _, ch := range p.Children {
			c.Children = append(c.Children, conv(ch))
		}
		return c
	}
	return conv(root), n, nil
}
