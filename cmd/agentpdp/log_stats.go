package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/internal/plural"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// logStatsCmd is agentpdp log stats: counts for a time range.
type logStatsCmd struct {
	streams
	db, since, until string
	asJSON           bool
}

func newLogStatsCmd() *cobra.Command {
	c := &logStatsCmd{}
	cmd := &cobra.Command{
		Use:   "stats [--since …]",
		Short: "Decisions by outcome, principal, action and hour; outcomes and approvals",
		Args:  noArgs,
		RunE:  runE(c, nil),
	}
	fl := cmd.Flags()
	dbFlag(fl, &c.db)
	fl.StringVar(&c.since, "since", "", "only after this: a duration ago (24h) or an RFC 3339 time")
	fl.StringVar(&c.until, "until", "", "only before this, as --since")
	fl.BoolVar(&c.asJSON, "json", false, "one JSON object")
	return cmd
}

func (c *logStatsCmd) Run(ctx context.Context) error {
	lo, hi, err := timeRange("log stats", c.since, c.until)
	if err != nil {
		return err
	}
	r, err := openLog("log stats", c.db)
	if err != nil {
		return err
	}
	defer r.Close()
	s, err := r.Summarize(ctx, lo, hi)
	if err != nil {
		return err
	}
	st, err := r.Stats(ctx)
	if err != nil {
		return err
	}
	if c.asJSON {
		return json.NewEncoder(c.stdout).Encode(struct {
			*decisionlog.Summary
			Log decisionlog.Stats `json:"log"`
		}{s, st})
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "log\t%s, %.1f MB\t(last seq %d)\n", plural.Count(st.Rows, "row", "rows"), float64(st.Bytes)/1e6, st.LastSeq)
	fmt.Fprintf(tw, "write-ahead log\t%.1f MB\t(truncated to 64 MB when it starts over)\n", float64(st.WALBytes)/1e6)
	if st.IndexBytes > 0 {
		fmt.Fprintf(tw, "provenance index\t%.1f MB\t(through seq %d)\n", float64(st.IndexBytes)/1e6, st.IndexedSeq)
	} else {
		fmt.Fprintf(tw, "provenance index\tnone\t(lookups by principal, session, trace… scan the log)\n")
	}
	fmt.Fprintf(tw, "decisions\t%d\t(allow %d, deny %d, step_up %d)\n", s.Decisions, s.ByDecision[string(wire.Allow)], s.ByDecision[string(wire.Deny)], s.ByDecision[string(wire.StepUp)])
	fmt.Fprintf(tw, "outcomes\t%d\t(success %d, error %d, skipped %d)\n", s.Outcomes["success"]+s.Outcomes["error"]+s.Outcomes["skipped"], s.Outcomes["success"], s.Outcomes["error"], s.Outcomes["skipped"])
	fmt.Fprintf(tw, "approvals\t%d\t\n", s.Approvals)
	fmt.Fprintln(tw, "\nby principal\t\t")
	for _, c := range s.ByPrincipal {
		fmt.Fprintf(tw, "  %s\t%d\t\n", c.Key, c.Count)
	}
	fmt.Fprintln(tw, "\nby action\t\t")
	for _, c := range s.ByAction {
		fmt.Fprintf(tw, "  %s\t%d\t\n", c.Key, c.Count)
	}
	fmt.Fprintln(tw, "\nper hour (UTC)\t\t")
	for _, c := range s.PerHour {
		fmt.Fprintf(tw, "  %s\t%d\t\n", c.Key, c.Count)
	}
	return tw.Flush()
}
