package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// chainNode is a decision in a chain of tool calls, with what followed it.
type chainNode struct {
	Decision  *decisionlog.Entry   `json:"decision"`
	Outcomes  []*decisionlog.Entry `json:"outcomes"`
	Approvals []*decisionlog.Entry `json:"approvals"`
	Children  []*chainNode         `json:"children"` // calls it led to, and retries its approval allowed
	record    wire.DecisionRecord
}

const maxChain = 10000 // nodes: a bound on what one command reads

// logChainCmd is agentpdp log chain: the tree of calls around a decision.
type logChainCmd struct {
	streams
	local  bool // --local
	db     string
	asJSON bool
	args   []string // the decision id
}

func newLogChainCmd() *cobra.Command {
	c := &logChainCmd{}
	cmd := &cobra.Command{
		Use:   "chain DECISION_ID",
		Short: "The whole tree of tool calls around a decision: ancestors, descendants, approvals and outcomes",
		Args:  oneArg("decision id"),
		RunE:  runE(c, &c.args),
	}
	dbFlag(cmd.Flags(), &c.db)
	cmd.Flags().BoolVar(&c.asJSON, "json", false, "one JSON object, nested")
	localFlag(cmd.Flags(), &c.local)
	return cmd
}

func (c *logChainCmd) Run(ctx context.Context) error {
	r, err := openLog("log chain", c.db)
	if err != nil {
		return err
	}
	defer r.Close()
	root, err := chainRoot(ctx, r, c.args[0])
	if err != nil {
		return exitError{exitFail, err}
	}
	seen := map[string]bool{}
	tree, err := buildChain(ctx, r, root, seen)
	if err != nil {
		return err
	}
	if c.asJSON {
		return json.NewEncoder(c.stdout).Encode(tree)
	}
	printChain(c.stdout, tree, c.args[0], "", "", zone(c.local))
	return nil
}

// chainRoot follows parent_decision_id (and the approval a retry used) up
// from id to the first decision of the chain.
func chainRoot(ctx context.Context, r *decisionlog.Reader, id string) (*decisionlog.Entry, error) {
	entry, err := r.Decision(ctx, id)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{id: true}
	for range maxChain {
		var rec wire.DecisionRecord
		if err := json.Unmarshal(entry.Body, &rec); err != nil {
			return nil, err
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

func buildChain(ctx context.Context, r *decisionlog.Reader, e *decisionlog.Entry, seen map[string]bool) (*chainNode, error) {
	n := &chainNode{Decision: e, Children: []*chainNode{}}
	if err := json.Unmarshal(e.Body, &n.record); err != nil {
		return nil, err
	}
	id := n.record.DecisionID
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
		child, err := buildChain(ctx, r, c, seen)
		if err != nil {
			return nil, err
		}
		n.Children = append(n.Children, child)
	}
	return n, nil
}

func printChain(w io.Writer, n *chainNode, focus, indent, branch string, loc *time.Location) {
	mark := "  "
	if n.record.DecisionID == focus {
		mark = "* "
	}
	fmt.Fprintf(w, "%s%s%s%s\n", indent, branch, mark, describe(n.Decision, loc))
	next := indent
	switch branch {
	case "├─ ":
		next += "│  "
	case "└─ ":
		next += "   "
	}
	var lines []func(last bool)
	for _, a := range n.Approvals {
		lines = append(lines, func(last bool) { fmt.Fprintf(w, "%s%s  %s\n", next, pick(last), describe(a, loc)) })
	}
	for _, o := range n.Outcomes {
		lines = append(lines, func(last bool) { fmt.Fprintf(w, "%s%s  %s\n", next, pick(last), describe(o, loc)) })
	}
	for _, c := range n.Children {
		lines = append(lines, func(last bool) { printChain(w, c, focus, next, pick(last), loc) })
	}
	for i, line := range lines {
		line(i == len(lines)-1)
	}
}

func pick(last bool) string {
	if last {
		return "└─ "
	}
	return "├─ "
}
