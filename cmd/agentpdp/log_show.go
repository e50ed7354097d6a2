package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

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
	x, err := pdp.Explain(ctx, r, c.args[0])
	if errors.Is(err, decisionlog.ErrNotFound) {
		// The commonest slip is a seq or a prefix where the full id belongs.
		return exitError{exitFail, fmt.Errorf("log show: no decision with id %q in %s (log query lists decision ids, in its last column)", c.args[0], c.db)}
	}
	if err != nil {
		return exitError{exitFail, err}
	}
	if c.asJSON {
		return json.NewEncoder(c.stdout).Encode(x)
	}
	printExplained(c.stdout, x, zone(c.local))
	return nil
}

func printExplained(w io.Writer, x *pdp.Explanation, loc *time.Location) {
	rec, req := x.Record, x.Record.Request
	fmt.Fprintf(w, "Decision %s (seq %d, %s)\n\n", rec.DecisionID, x.Entry.Seq, showTime(x.Entry.Time, loc))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "  %s\t%s\n", k, v)
		}
	}
	row("decision", strings.ToUpper(string(rec.Decision)))
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
		caller := fmt.Sprintf("pid %d, uid %d, gid %d, %s", p.PID, p.UID, p.GID, p.Exe)
		if p.Cgroup != "" {
			caller += ", cgroup " + p.Cgroup
		}
		row("caller", caller)
	} else {
		row("caller", "(not a Unix socket peer)")
	}
	row("policy version", rec.PolicyVersion)
	row("on_error", string(rec.OnError))
	row("evaluated in", time.Duration(rec.EvalNanos).String())
	if rec.SharedIdentity {
		row("shared identity", "yes: another executable or uid used this principal recently")
	}
	tw.Flush()
	printEvidence(w, &rec)

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

// printEvidence says, for each fact the decision used, whether it was
// verified (a token), attested (the kernel), trusted (entity files and
// providers) or claimed (the request).
func printEvidence(w io.Writer, rec *wire.DecisionRecord) {
	ev := rec.Evidence
	if ev == nil {
		return
	}
	fmt.Fprintln(w, "\nSources of the facts (verified: a token; attested: the kernel; trusted: entity files and providers; claimed: the request)")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v, source string) {
		if source != "" {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", k, v, source)
		}
	}
	row("principal", rec.Principal, ev.Principal)
	row("principal's entity", rec.Principal, pdp.EntitySource(ev.PrincipalEntity))
	row("resource's entity", rec.Resource, pdp.EntitySource(ev.ResourceEntity))
	if rec.Request != nil {
		if c := rec.Request.Credential; c != nil {
			row("credential", c.ID, ev.Credential)
		}
		row("on behalf of", rec.Request.OnBehalfOf, ev.OnBehalfOf)
	}
	row("context", "", ev.Context)
	if p := rec.Peer; p != nil {
		row("caller", fmt.Sprintf("uid %d, %s", p.UID, p.Exe), ev.Caller)
	}
	for _, uid := range slices.Sorted(maps.Keys(ev.Entities)) {
		row("entity", uid, ev.Entities[uid])
	}
	if f := ev.Identity; f != nil {
		if f.Verified {
			row("token", pdp.TokenHolder(f), "verified")
			if chain := pdp.DelegationChain(f); chain != "" {
				row("delegation", chain, "verified")
			}
		} else {
			row("token", "refused: "+f.Error, "claimed")
		}
		row("token thumbprint", f.TokenSHA256, "-")
	}
	tw.Flush()
}
