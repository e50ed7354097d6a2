package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp/server"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// filterFlags are the decision filters that log query and replay share.
type filterFlags struct {
	decision, since, until       string
	principal, action, resource  string
	session, task, trace         string
	classification, onBehalfOf   string
	credential, toolCall, parent string
	peerUID                      int64
	shadowDiff                   bool
}

func (ff *filterFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&ff.decision, "decision", "", "allow, deny or step_up, or a decision id")
	fl.StringVar(&ff.principal, "principal", "", `principal: Agent::"id", or a bare id of any type`)
	fl.StringVar(&ff.action, "action", "", `action: Action::"id", or a bare id`)
	fl.StringVar(&ff.resource, "resource", "", `resource: Tool::"id", or a bare id`)
	fl.StringVar(&ff.session, "session", "", "session id")
	fl.StringVar(&ff.task, "task", "", "task id")
	fl.StringVar(&ff.trace, "trace", "", "trace id")
	fl.StringVar(&ff.classification, "classification", "", "data classification (public, confidential, …)")
	fl.StringVar(&ff.onBehalfOf, "on-behalf-of", "", "the person the agent acted for")
	fl.StringVar(&ff.credential, "credential", "", "credential id (jti)")
	fl.StringVar(&ff.toolCall, "tool-call", "", "tool call id")
	fl.StringVar(&ff.parent, "parent", "", "parent decision id: the calls a decision led to")
	fl.Int64Var(&ff.peerUID, "peer-uid", -1, "the caller's uid, as the kernel saw it")
	fl.BoolVar(&ff.shadowDiff, "shadow-diff", false, "only decisions the shadow policies would have answered otherwise")
	fl.StringVar(&ff.since, "since", "", "only decisions after this: a duration ago (15m, 24h) or an RFC 3339 time")
	fl.StringVar(&ff.until, "until", "", "only decisions before this, as --since")
}

// filter builds the log filter, checking values as the admin API does.
func (ff *filterFlags) filter(command string, limit int) (decisionlog.Filter, error) {
	q := url.Values{}
	for k, v := range map[string]string{"principal": ff.principal, "action": ff.action, "resource": ff.resource,
		"session_id": ff.session, "task_id": ff.task, "trace_id": ff.trace, "since": ff.since, "until": ff.until} {
		if v != "" {
			q.Set(k, v)
		}
	}
	q.Set("limit", strconv.Itoa(limit))
	f, err := server.FilterFromQuery(q, time.Now())
	if err != nil {
		return f, usagef("%s: --%s", command, strings.Replace(err.Error(), "_id", "", 1))
	}
	f.Classification, f.OnBehalfOf, f.CredentialID, f.ToolCallID, f.ParentDecisionID = ff.classification, ff.onBehalfOf, ff.credential, ff.toolCall, ff.parent
	f.ShadowDiff = ff.shadowDiff
	if ff.peerUID >= 0 {
		uid := uint32(ff.peerUID)
		f.PeerUID = &uid
	}
	switch wire.Verdict(ff.decision) {
	case "":
	case wire.Allow, wire.Deny, wire.StepUp:
		f.Decision = ff.decision
	default:
		// Decision ids are UUIDs; anything else is a mistyped decision
		// ("permit" is Cedar's word, not agentpdp's), which must not
		// silently match nothing.
		if _, err := uuid.Parse(ff.decision); err != nil {
			return f, usagef("%s: --decision %q: want allow, deny or step_up, or a decision id (a UUID)", command, ff.decision)
		}
		f.DecisionID = ff.decision
	}
	return f, nil
}

// logQueryCmd is agentpdp log query: decisions that match filters.
type logQueryCmd struct {
	streams
	local  bool // --local
	db     string
	ff     filterFlags
	limit  int
	asJSON bool
}

func newLogQueryCmd() *cobra.Command {
	c := &logQueryCmd{}
	cmd := &cobra.Command{
		Use:   "query --db FILE [filters]",
		Short: "List logged decisions, newest first (opens the database read-only)",
		Args:  noArgs,
		RunE:  runE(c, nil),
	}
	fl := cmd.Flags()
	dbFlag(fl, &c.db)
	c.ff.register(fl)
	fl.IntVar(&c.limit, "limit", 100, "at most `N` decisions")
	fl.BoolVar(&c.asJSON, "json", false, "one JSON object per line, with every logged field")
	localFlag(fl, &c.local)
	return cmd
}

func (c *logQueryCmd) Run(ctx context.Context) error {
	f, err := c.ff.filter("log query", c.limit)
	if err != nil {
		return err
	}
	r, err := openLog("log query", c.db)
	if err != nil {
		return err
	}
	defer r.Close()
	entries, err := r.Query(ctx, f)
	if err != nil {
		return err
	}
	if c.asJSON {
		return printEntries(c.stdout, entries, true, time.UTC)
	}
	return printDecisionTable(c.stdout, entries, zone(c.local))
}

func printDecisionTable(w io.Writer, entries []*decisionlog.Entry, loc *time.Location) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	withShadow := false
	for _, e := range entries {
		withShadow = withShadow || strings.Contains(string(e.Body), `"shadow":{`)
	}
	head := "SEQ\tTIME\tDECISION\tPRINCIPAL\tACTION\tRESOURCE\tREASONS\tDECISION ID"
	if withShadow {
		head = "SEQ\tTIME\tDECISION\tSHADOW\tPRINCIPAL\tACTION\tRESOURCE\tREASONS\tSHADOW REASONS\tDECISION ID"
	}
	fmt.Fprintln(tw, head)
	for _, e := range entries {
		var rec wire.DecisionRecord
		if err := json.Unmarshal(e.Body, &rec); err != nil {
			return fmt.Errorf("seq %d: %w", e.Seq, err)
		}
		at := showTime(e.Time, loc)
		if !withShadow {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, at, rec.Decision, rec.Principal, rec.Action, rec.Resource, orDash(reasonList(rec.Reasons)), rec.DecisionID)
			continue
		}
		shadow, shadowWhy := "-", "-"
		if rec.Shadow != nil {
			shadow, shadowWhy = string(rec.Shadow.Decision), orDash(reasonList(rec.Shadow.Reasons))
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, at, rec.Decision, shadow, rec.Principal, rec.Action, rec.Resource,
			orDash(reasonList(rec.Reasons)), shadowWhy, rec.DecisionID)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
