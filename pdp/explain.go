package pdp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp/policy"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// Explanation is one logged decision with what a reviewer needs around it,
// read from the log alone: `agentpdp log show` prints it and the review
// console renders it.
type Explanation struct {
	Entry        *decisionlog.Entry   `json:"decision"`
	Record       wire.DecisionRecord  `json:"-"`
	Outcomes     []*decisionlog.Entry `json:"outcomes"`      // oldest first, never nil
	Approvals    []*decisionlog.Entry `json:"approvals"`     // answers to this decision, if it was step_up
	ApprovalUsed *decisionlog.Entry   `json:"approval_used"` // the approval this decision was allowed by
	// Policies are the deciding policies (reasons, then policies whose
	// evaluation failed), with their text from the version recorded.
	Policies []PolicyText `json:"policies"`
	// Files are the policy files of the version recorded, as its load row
	// holds them; nil when the log holds no load of that version.
	Files []policy.PolicyFile `json:"-"`
}

// PolicyText is a deciding policy and its text.
type PolicyText struct {
	ID     string `json:"id"`
	Effect string `json:"effect,omitempty"`
	File   string `json:"file"`
	Line   int    `json:"line"`
	Text   string `json:"text"`            // or a note saying why there is none
	Found  bool   `json:"-"`               // Text is the policy's
	Error  string `json:"error,omitempty"` // its evaluation error, for a policy that failed
}

// Explain reads decision id and what surrounds it. An unknown id is
// decisionlog.ErrNotFound.
func Explain(ctx context.Context, r *decisionlog.Reader, id string) (*Explanation, error) {
	entry, err := r.Decision(ctx, id)
	if err != nil {
		return nil, err
	}
	return ExplainEntry(ctx, r, entry)
}

// ExplainEntry is Explain for a decision entry already read.
func ExplainEntry(ctx context.Context, r *decisionlog.Reader, entry *decisionlog.Entry) (*Explanation, error) {
	x := &Explanation{Entry: entry, Policies: []PolicyText{}}
	if err := json.Unmarshal(entry.Body, &x.Record); err != nil {
		return nil, fmt.Errorf("decision at seq %d: %w", entry.Seq, err)
	}
	var err error
	if x.Outcomes, x.Approvals, err = AfterDecision(ctx, r, x.Record.DecisionID); err != nil {
		return nil, err
	}
	if used := x.Record.Approval; used != nil {
		as, err := r.Query(ctx, decisionlog.Filter{Kinds: []decisionlog.Kind{decisionlog.KindApproval}, DecisionID: used.ID, Limit: 1})
		if err != nil {
			return nil, err
		}
		if len(as) > 0 {
			x.ApprovalUsed = as[0]
		}
	}
	load, err := r.PolicyLoad(ctx, x.Record.PolicyVersion)
	if err != nil && !errors.Is(err, decisionlog.ErrNotFound) {
		return nil, err
	}
	if load != nil {
		var rec PolicyLoadRecord
		if err := json.Unmarshal(load.Body, &rec); err != nil {
			return nil, fmt.Errorf("policy load seq %d: %w", load.Seq, err)
		}
		x.Files = rec.Files
	}
	add := func(p PolicyText) {
		p.Text, p.Found = policy.PolicyText(x.Files, p.File, p.Line)
		if !p.Found {
			p.Text = "(text not found: the log holds no load of policy version " + x.Record.PolicyVersion + ")"
		}
		x.Policies = append(x.Policies, p)
	}
	for _, rs := range x.Record.Reasons {
		if !rs.Builtin {
			add(PolicyText{ID: rs.Policy, Effect: rs.Effect, File: rs.File, Line: rs.Line})
		}
	}
	for _, e := range x.Record.Errors {
		add(PolicyText{ID: e.Policy, Effect: e.Effect, File: e.File, Line: e.Line, Error: e.Message})
	}
	return x, nil
}

// AfterDecision returns the outcomes and approvals recorded for decision
// id, oldest first (never nil, so that JSON shows empty lists).
func AfterDecision(ctx context.Context, r *decisionlog.Reader, id string) (outcomes, approvals []*decisionlog.Entry, err error) {
	related, err := r.Query(ctx, decisionlog.Filter{Kinds: []decisionlog.Kind{decisionlog.KindOutcome, decisionlog.KindApproval}, DecisionID: id, Limit: 1000})
	if err != nil {
		return nil, nil, err
	}
	outcomes, approvals = []*decisionlog.Entry{}, []*decisionlog.Entry{}
	for i := len(related) - 1; i >= 0; i-- { // Query returns newest first
		if related[i].Kind == decisionlog.KindOutcome {
			outcomes = append(outcomes, related[i])
		} else {
			approvals = append(approvals, related[i])
		}
	}
	return outcomes, approvals, nil
}

// ChainNode is a decision in a tree of tool calls, with what followed it.
type ChainNode struct {
	Decision  *decisionlog.Entry   `json:"decision"`
	Outcomes  []*decisionlog.Entry `json:"outcomes"`
	Approvals []*decisionlog.Entry `json:"approvals"`
	Children  []*ChainNode         `json:"children"` // calls it led to, and retries its approval allowed
	Record    wire.DecisionRecord  `json:"-"`
}

// MaxChain bounds the decisions one chain reads.
const MaxChain = 10000

// Chain returns the tree around decision id: up by parent_decision_id (and
// the approval a retry used) to the first decision of the chain, then every
// decision below it, at most MaxChain of them. An unknown id is
// decisionlog.ErrNotFound.
func Chain(ctx context.Context, r *decisionlog.Reader, id string) (*ChainNode, error) {
	root, err := chainRoot(ctx, r, id)
	if err != nil {
		return nil, err
	}
	return buildChain(ctx, r, root, map[string]bool{})
}

func chainRoot(ctx context.Context, r *decisionlog.Reader, id string) (*decisionlog.Entry, error) {
	entry, err := r.Decision(ctx, id)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{id: true}
	for range MaxChain {
		var rec wire.DecisionRecord
		if err := json.Unmarshal(entry.Body, &rec); err != nil {
			return nil, fmt.Errorf("decision at seq %d: %w", entry.Seq, err)
		}
		up := ""
		if rec.Request != nil {
			up = rec.Request.ParentDecisionID
			if up == "" {
				up = rec.Request.Approval
			}
		}
		if up == "" || seen[up] {
			return entry, nil
		}
		parent, err := r.Decision(ctx, up)
		if err != nil {
			return entry, nil // the parent is outside this log (another host, or pruned)
		}
		seen[up] = true
		entry = parent
	}
	return entry, nil
}

func buildChain(ctx context.Context, r *decisionlog.Reader, e *decisionlog.Entry, seen map[string]bool) (*ChainNode, error) {
	n := &ChainNode{Decision: e, Children: []*ChainNode{}}
	if err := json.Unmarshal(e.Body, &n.Record); err != nil {
		return nil, fmt.Errorf("decision at seq %d: %w", e.Seq, err)
	}
	id := n.Record.DecisionID
	seen[id] = true
	var err error
	if n.Outcomes, n.Approvals, err = AfterDecision(ctx, r, id); err != nil {
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
		if json.Unmarshal(c.Body, &cr) != nil || seen[cr.DecisionID] || len(seen) >= MaxChain {
			continue
		}
		child, err := buildChain(ctx, r, c, seen)
		if err != nil {
			return nil, err
		}
		n.Children = append(n.Children, child)
	}
	return n, nil
}

// EntitySource is the source a row's evidence records for an entity's
// attributes (wire.Evidence.PrincipalEntity or ResourceEntity), or
// "unknown to every source" when it records none. `agentpdp log show` and
// the review console both label the entities this way.
func EntitySource(source string) string {
	if source == "" {
		return "unknown to every source"
	}
	return source
}

// TokenHolder names whom a verified token was issued to:
// "<principal> from <issuer>", followed by " (<SPIFFE ID>)" when the token
// was an SVID.
func TokenHolder(f *wire.IdentityFacts) string {
	id := f.Principal + " from " + f.Issuer
	if f.SPIFFEID != "" {
		id += " (" + f.SPIFFEID + ")"
	}
	return id
}

// DelegationChain is a verified token's RFC 8693 act chain as
// "<current actor> (via <earlier actors>, ...) for <subject>", or "" when
// the token carried no actors.
func DelegationChain(f *wire.IdentityFacts) string {
	if len(f.Actors) == 0 {
		return ""
	}
	chain := f.Actors[0]
	if len(f.Actors) > 1 {
		chain += " (via " + strings.Join(f.Actors[1:], ", ") + ")"
	}
	return chain + " for " + f.Subject
}
