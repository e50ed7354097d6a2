package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/agentpdp/agentpdp/pdp"
	"github.com/spf13/cobra"
)

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
	tree, err := pdp.Chain(ctx, r, c.args[0])
	if err != nil {
		return exitError{exitFail, err}
	}
	if c.asJSON {
		return json.NewEncoder(c.stdout).Encode(tree)
	}
	printChain(c.stdout, tree, c.args[0], "", "", zone(c.local))
	return nil
}

func printChain(w io.Writer, n *pdp.ChainNode, focus, indent, branch string, loc *time.Location) {
	mark := "  "
	if n.Record.DecisionID == focus {
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
