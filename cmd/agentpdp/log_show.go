package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/policy"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// explained is one decision with everything a reviewer needs around it.
type explained struct {
	Entry        *decisionlog.Entry   `json:"decision"`
	Record       wire.DecisionRecord  `json:"-"`
	Outcomes     []*decisionlog.Entry `json:"outcomes"`
	Approvals    []*decisionlog.Entry `json:"approvals"`     // answers to this decision, if it was step_up
	ApprovalUsed *decisionlog.Entry   `json:"approval_used"` // the approval this decision was allowed by
	Policies     []policyText         `json:"policies"`      // the deciding policies, from the version recorded
}

type policyText struct {
	ID   string `json:"id"`
	File string `json:"file"`
	Line int    `json:"line"`
	Text string `json:"text"`
}

func explain(ctx context.Context, r *decisionlog.Reader, id string) (*explained, error) {
	entry, err := r.Decision(ctx, id)
	if err != nil {
		return nil, err
	}
	x := &explained{Entry: entry, Policies: []policyText{}}
	if err := json.Unmarshal(entry.Body, &x.Record); err != nil {
		return nil, fmt.Errorf("decision %s: %w", id, err)
	}
	if x.Outcomes, x.Approvals, err = afterDecision(ctx, r, id); err != nil {
		return nil, err
	}
	if used := x.Record.Approval; used != nil {
		as, err := r.Query(ctx, decisionlog.Filter{Kinds: []decisionlog.Kind{pdp.KindApproval}, DecisionID: used.ID, Limit: 1})
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
	var files []policy.PolicyFile
	if load != nil {
		var rec pdp.PolicyLoadRecord
		if err := json.Unmarshal(load.Body, &rec); err != nil {
			return nil, fmt.Errorf("policy load seq %d: %w", load.Seq, err)
		}
		files = rec.Files
	}
	for _, rs := range append(append([]wire.Reason{}, x.Record.Reasons...), errorsAsReasons(x.Record.Errors)...) {
		if rs.Builtin {
			continue
		}
		text, ok := policy.PolicyText(files, rs.File, rs.Line)
		if !ok {
			text = "(text not found: the log holds no load of policy version " + x.Record.PolicyVersion + ")"
		}
		x.Policies = append(x.Policies, policyText{ID: rs.Policy, File: rs.File, Line: rs.Line, Text: text})
	}
	return x, nil
}

// afterDecision returns the outcomes and approvals recorded for decision
// id, oldest first (never nil, so JSON shows empty lists).
func afterDecision(ctx context.Context, r *decisionlog.Reader, id string) (outcomes, approvals []*decisionlog.Entry, err error) {
	related, err := r.Query(ctx, decisionlog.Filter{Kinds: []decisionlog.Kind{pdp.KindOutcome, pdp.KindApproval}, DecisionID: id, Limit: 1000})
	if err != nil {
		return nil, nil, err
	}
	outcomes, approvals = []*decisionlog.Entry{}, []*decisionlog.Entry{}
	for i := len(related) - 1; i >= 0; i-- { // Query returns newest first
		if related[i].Kind == pdp.KindOutcome {
			outcomes = append(outcomes, related[i])
		} else {
			approvals = append(approvals, related[i])
		}
	}
	return outcomes, approvals, nil
}

func errorsAsReasons(es []wire.EvalError) []wire.Reason {
	var out []wire.Reason
	for _, e := range es {
		out = append(out, wire.Reason{Policy: e.Policy, Effect: e.Effect, File: e.File, Line: e.Line})
	}
	return out
}

// logShowCmd is agentpdp log show: one decision explained.
type logShowCmd struct {
	streams
	local  bool // --local
	db     string
	asJSON bool
	args   []string // the decision id
}

func newLogShowCmd() *cobra.Command {
	c := &logShowCmd{}
	cmd := &cobra.Command{
		Use:   "show DECISION_ID",
		Short: "One decision: who asked, for whom, under which credential, why (with the policies' text), approvals and outcomes",
		Args:  oneArg("decision id"),
		RunE:  runE(c, &c.args),
	}
	dbFlag(cmd.Flags(), &c.db)
	cmd.Flags().BoolVar(&c.asJSON, "json", false, "one JSON object")
	localFlag(cmd.Flags(), &c.local)
	return cmd
}

func (c *logShowCmd) Run(ctx context.Context) error {
	r, err := openLog("log show", c.db)
	if err != nil {
		return err
	}
	defer r.Close()
	x, err := explain(ctx, r, c.args[0])
	if err != nil {
		return exitError{exitFail, err}
	}
	if c.asJSON {
		return json.NewEncoder(c.stdout).Encode(x)
	}
	printExplained(c.stdout, x, zone(c.local))
	return nil
}

func printExplained(w io.Writer, x *explained, loc *time.Location) {
	rec, req := x.Record, x.Record.Request
	fmt.Fprintf(w, "Decision %s (seq %d, %s)\n\n", rec.DecisionID, x.Entry.Seq, showTime(x.Entry.Time, loc))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "  %s\t%s\n", k, v)
		}
	}
	row("decision", strings.ToUpper(rec.Decision))
	row("principal", rec.Principal)
	row("action", rec.Action)
	row("resource", rec.Resource)
	row("classification", rec.Classification)
	if req != nil {
		row("on behalf of", req.OnBehalfOf)
		row("session", req.SessionID)
		row("task", req.TaskID)
		row("trace", req.TraceID)
		row("parent decision", req.ParentDecisionID)
		row("tool call", req.ToolCallID)
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
				cred += ", expires " + showTime(*c.ExpiresAt, loc)
			}
			row("credential", cred)
		}
		row("prompt", req.Prompt)
		if len(req.Context) > 2 {
			row("context", string(req.Context))
		}
		if len(req.Entities) > 0 {
			b, _ := json.Marshal(req.Entities)
			row("inline entities", string(b))
		}
	}
	if len(rec.Masked) > 0 {
		row("masked", strings.Join(rec.Masked, " "))
	}
	if p := rec.Peer; p != nil {
		row("caller", fmt.Sprintf("pid %d, uid %d, gid %d, %s", p.PID, p.UID, p.GID, p.Exe))
	} else {
		row("caller", "(not a Unix socket peer)")
	}
	row("policy version", rec.PolicyVersion)
	row("on_error", string(rec.OnError))
	row("evaluated in", time.Duration(rec.EvalNanos).String())
	tw.Flush()

	fmt.Fprintln(w, "\nWhy")
	if len(rec.Reasons) == 0 {
		fmt.Fprintln(w, "  no policy permits this request (default deny)")
	}
	for _, r := range rec.Reasons {
		if r.Builtin {
			fmt.Fprintf(w, "  %s (built-in): %s\n", r.Policy, r.Detail)
			continue
		}
		fmt.Fprintf(w, "  %s %s at %s:%d\n", r.Effect, r.Policy, r.File, r.Line)
	}
	if len(rec.Errors) > 0 {
		fmt.Fprintln(w, "\nPolicies that failed to evaluate")
		for _, e := range rec.Errors {
			fmt.Fprintf(w, "  %s at %s:%d: %s\n", e.Policy, e.File, e.Line, e.Message)
		}
	}
	if len(x.Policies) > 0 {
		fmt.Fprintf(w, "\nPolicy text, as recorded with %s\n", rec.PolicyVersion)
		for _, p := range x.Policies {
			fmt.Fprintf(w, "  // %s (%s:%d)\n", p.ID, p.File, p.Line)
			for _, line := range strings.Split(strings.TrimSpace(p.Text), "\n") {
				fmt.Fprintf(w, "  %s\n", line)
			}
		}
	}
	if x.ApprovalUsed != nil {
		fmt.Fprintln(w, "\nAllowed by approval")
		fmt.Fprintf(w, "  %s\n", describe(x.ApprovalUsed, loc))
	}
	if len(x.Approvals) > 0 {
		fmt.Fprintln(w, "\nApprovals of this decision")
		for _, a := range x.Approvals {
			fmt.Fprintf(w, "  %s\n", describe(a, loc))
		}
	} else if rec.Decision == wire.StepUp {
		fmt.Fprintln(w, "\nApprovals of this decision\n  none: no human has answered this step-up")
	}
	fmt.Fprintln(w, "\nOutcomes")
	if len(x.Outcomes) == 0 {
		fmt.Fprintln(w, "  none reported")
	}
	for _, o := range x.Outcomes {
		var r wire.OutcomeRecord
		json.Unmarshal(o.Body, &r)
		line := describe(o, loc)
		if len(r.Detail) > 0 {
			line += " " + string(r.Detail)
		}
		fmt.Fprintf(w, "  %s\n", line)
	}
}
