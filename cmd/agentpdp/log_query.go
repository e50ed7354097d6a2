package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp"
)

func newLogQueryCmd() *cobra.Command {
	var (
		db, decision, since, until   string
		principal, action, resource  string
		session, task, trace         string
		classification, onBehalfOf   string
		credential, toolCall, parent string
		peerUID                      int64
		limit                        int
		asJSON                       bool
	)
	cmd := &cobra.Command{
		Use:   "query --db FILE [filters]",
		Short: "List logged decisions, newest first (opens the database read-only)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			set := func(k, v string) {
				if v != "" {
					q.Set(k, v)
				}
			}
			set("principal", principal)
			set("action", action)
			set("resource", resource)
			set("session_id", session)
			set("task_id", task)
			set("trace_id", trace)
			set("since", since)
			set("until", until)
			q.Set("limit", strconv.Itoa(limit))
			f, err := pdp.FilterFromQuery(q, time.Now())
			if err != nil {
				return usagef("log query: --%s", strings.Replace(err.Error(), "_id", "", 1))
			}
			f.Classification, f.OnBehalfOf, f.CredentialID, f.ToolCallID, f.ParentDecisionID = classification, onBehalfOf, credential, toolCall, parent
			if peerUID >= 0 {
				uid := uint32(peerUID)
				f.PeerUID = &uid
			}
			switch decision {
			case "":
			case pdp.Allow, pdp.Deny, pdp.StepUp:
				f.Decision = decision
			default:
				f.DecisionID = decision
			}
			r, err := openReader(db)
			if err != nil {
				return err
			}
			defer r.Close()
			entries, err := r.Query(cmd.Context(), f)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				for _, e := range entries {
					if err := enc.Encode(e); err != nil {
						return err
					}
				}
				return nil
			}
			return printDecisionTable(cmd, entries)
		},
	}
	fl := cmd.Flags()
	dbFlag(fl, &db)
	fl.StringVar(&decision, "decision", "", "allow, deny or step_up, or a decision id")
	fl.StringVar(&principal, "principal", "", `principal: Agent::"id", or a bare id of any type`)
	fl.StringVar(&action, "action", "", `action: Action::"id", or a bare id`)
	fl.StringVar(&resource, "resource", "", `resource: Tool::"id", or a bare id`)
	fl.StringVar(&session, "session", "", "session id")
	fl.StringVar(&task, "task", "", "task id")
	fl.StringVar(&trace, "trace", "", "trace id")
	fl.StringVar(&classification, "classification", "", "data classification (public, confidential, …)")
	fl.StringVar(&onBehalfOf, "on-behalf-of", "", "the person the agent acted for")
	fl.StringVar(&credential, "credential", "", "credential id (jti)")
	fl.StringVar(&toolCall, "tool-call", "", "tool call id")
	fl.StringVar(&parent, "parent", "", "parent decision id: the calls a decision led to")
	fl.Int64Var(&peerUID, "peer-uid", -1, "the caller's uid, as the kernel saw it")
	fl.StringVar(&since, "since", "", "only decisions after this: a duration ago (15m, 24h) or an RFC 3339 time")
	fl.StringVar(&until, "until", "", "only decisions before this, as --since")
	fl.IntVar(&limit, "limit", 100, "at most `N` decisions")
	fl.BoolVar(&asJSON, "json", false, "one JSON object per line, with every logged field")
	return cmd
}

func printDecisionTable(cmd *cobra.Command, entries []*decisionlog.Entry) error {
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tDECISION\tPRINCIPAL\tACTION\tRESOURCE\tREASONS\tDECISION ID")
	for _, e := range entries {
		var rec pdp.DecisionRecord
		if err := json.Unmarshal(e.Body, &rec); err != nil {
			return fmt.Errorf("seq %d: %w", e.Seq, err)
		}
		reasons := make([]string, len(rec.Reasons))
		for i, r := range rec.Reasons {
			reasons[i] = r.Policy
		}
		why := strings.Join(reasons, ",")
		if why == "" {
			why = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.Local().Format("2006-01-02 15:04:05.000"),
			rec.Decision, rec.Principal, rec.Action, rec.Resource, why, rec.DecisionID)
	}
	return tw.Flush()
}
