package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/decisionlog/fleet"
	"github.com/agentpdp/agentpdp/internal/plural"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

func newFleetCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fleet",
		Short: "Query, verify and summarize the fleet's logs in the collectors' PostgreSQL",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("fleet: missing subcommand (query, verify, stats, events)")
		},
	}
	cmd.AddCommand(newFleetQueryCmd(), newFleetVerifyCmd(), newFleetStatsCmd(), newFleetEventsCmd())
	return cmd
}

// fleetFlags are what every fleet subcommand takes.
type fleetFlags struct {
	streams
	pg     string
	asJSON bool
}

func (f *fleetFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.pg, "pg", "", "PostgreSQL `DSN` (libpq key=value or postgres:// URL)")
	fl.BoolVar(&f.asJSON, "json", false, "one JSON object per line")
}

func (f *fleetFlags) open(ctx context.Context, command string) (*fleet.Store, error) {
	if f.pg == "" {
		return nil, usagef("%s: --pg is required", command)
	}
	return fleet.OpenStore(ctx, f.pg)
}

// fleetQueryCmd is agentpdp fleet query.
type fleetQueryCmd struct {
	fleetFlags
	ff     filterFlags
	origin string
	limit  int
}

func newFleetQueryCmd() *cobra.Command {
	c := &fleetQueryCmd{}
	cmd := &cobra.Command{
		Use:   "query --pg DSN [--origin NAME] [filters]",
		Short: "List decisions across origins, newest first; takes the filters of log query",
		Args:  noArgs,
		RunE:  runE(c, nil),
	}
	c.register(cmd.Flags())
	c.ff.register(cmd.Flags())
	cmd.Flags().StringVar(&c.origin, "origin", "", "only this origin (host log)")
	cmd.Flags().IntVar(&c.limit, "limit", 100, "at most `N` rows")
	return cmd
}

// Run prints the matching rows.
func (c *fleetQueryCmd) Run(ctx context.Context) error {
	f, err := c.ff.filter("fleet query", c.limit)
	if err != nil {
		return err
	}
	s, err := c.open(ctx, "fleet query")
	if err != nil {
		return err
	}
	defer s.Close()
	f.Kinds = []decisionlog.Kind{decisionlog.KindDecision}
	rows, err := fleet.Query(ctx, s, fleet.QueryFilter{Filter: f, Origin: c.origin})
	if err != nil {
		return err
	}
	if c.asJSON {
		for _, r := range rows {
			b, err := r.JSON()
			if err != nil {
				return fmt.Errorf("%s seq %d: %w", r.Origin, r.Seq, err)
			}
			fmt.Fprintf(c.stdout, "%s\n", b)
		}
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ORIGIN\tSEQ\tTIME\tDECISION\tPRINCIPAL\tACTION\tRESOURCE\tREASONS\tDECISION ID")
	for _, r := range rows {
		var rec wire.DecisionRecord
		if err := json.Unmarshal(r.Body, &rec); err != nil {
			return fmt.Errorf("%s seq %d: %w", r.Origin, r.Seq, err)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Origin, r.Seq, r.Time.UTC().Format(time.RFC3339Nano), rec.Decision,
			rec.Principal, rec.Action, rec.Resource, orDash(reasonList(rec.Reasons)), rec.DecisionID)
	}
	return tw.Flush()
}

// fleetVerifyCmd is agentpdp fleet verify.
type fleetVerifyCmd struct {
	fleetFlags
}

func newFleetVerifyCmd() *cobra.Command {
	c := &fleetVerifyCmd{}
	cmd := &cobra.Command{
		Use:   "verify --pg DSN",
		Short: "Re-check every stored chain, checkpoint signature and cosignature; exit 1 if any origin fails",
		Args:  noArgs,
		RunE:  runE(c, nil),
	}
	c.register(cmd.Flags())
	return cmd
}

// Run verifies and reports per origin.
func (c *fleetVerifyCmd) Run(ctx context.Context) error {
	s, err := c.open(ctx, "fleet verify")
	if err != nil {
		return err
	}
	defer s.Close()
	var progress func(string, int64)
	if f, ok := c.stderr.(*os.File); ok && isTerminal(f) && !c.asJSON {
		progress = func(origin string, seq int64) { fmt.Fprintf(c.stderr, "\rverifying %s: seq %d", origin, seq) }
	}
	rep, err := fleet.VerifyAll(ctx, s, progress)
	if err != nil {
		return err
	}
	if progress != nil {
		fmt.Fprintln(c.stderr)
	}
	if c.asJSON {
		enc := json.NewEncoder(c.stdout)
		for _, o := range rep.Origins {
			enc.Encode(o)
		}
		enc.Encode(map[string]any{"ok": rep.OK(), "rows": rep.Rows, "seconds": rep.Seconds})
	} else {
		for _, o := range rep.Origins {
			if o.OK {
				sig := "signatures checked"
				if !o.SignaturesChecked {
					sig = "signatures NOT checked (no key registered)"
				}
				fmt.Fprintf(c.stdout, "ok      %s: %s (seq 1 to %d), %s (%s), %s verified\n", o.Origin, plural.Count(o.Rows, "row", "rows"), o.VerifiedSeq,
					plural.Count(o.Checkpoints, "checkpoint", "checkpoints"), sig, plural.Count(o.Cosignatures, "cosignature", "cosignatures"))
				continue
			}
			fmt.Fprintf(c.stdout, "FAILED  %s at seq %d: %s (rows 1 to %d verify; %d stored up to seq %d)\n", o.Origin, o.ProblemSeq, o.Problem, o.VerifiedSeq, o.Rows, o.MaxSeq)
		}
		fmt.Fprintf(c.stdout, "%s in %.2fs (%.0f rows/s)\n", plural.Count(rep.Rows, "row", "rows"), rep.Seconds, float64(rep.Rows)/max(rep.Seconds, 1e-9))
	}
	if !rep.OK() {
		return exitError{exitFail, errSilent}
	}
	return nil
}

// fleetStatsCmd is agentpdp fleet stats.
type fleetStatsCmd struct {
	fleetFlags
	since string
}

func newFleetStatsCmd() *cobra.Command {
	c := &fleetStatsCmd{}
	cmd := &cobra.Command{
		Use:   "stats --pg DSN [--since 24h]",
		Short: "Rows by origin, decision, principal and hour, with each origin's verification and witness state",
		Args:  noArgs,
		RunE:  runE(c, nil),
	}
	c.register(cmd.Flags())
	cmd.Flags().StringVar(&c.since, "since", "", "only rows after this: a duration ago (24h) or an RFC 3339 time")
	return cmd
}

// Run prints the summary.
func (c *fleetStatsCmd) Run(ctx context.Context) error {
	since, err := parseSince("fleet stats", c.since)
	if err != nil {
		return err
	}
	s, err := c.open(ctx, "fleet stats")
	if err != nil {
		return err
	}
	defer s.Close()
	st, err := fleet.FleetStats(ctx, s, since)
	if err != nil {
		return err
	}
	if c.asJSON {
		return json.NewEncoder(c.stdout).Encode(st)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ORIGIN\tROWS\tMAX SEQ\tVERIFIED\tWITNESSED\tEVENTS\tSTATE")
	for _, o := range st.Origins {
		state := "ok"
		switch {
		case o.Halted != "":
			state = "HALTED: " + o.Halted
		case o.GapSince != nil:
			state = "waiting for seq " + fmt.Sprint(o.VerifiedSeq+1) + " since " + o.GapSince.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\n", o.Origin, o.Rows, o.MaxSeq, o.VerifiedSeq, o.WitnessedSize, o.Events, state)
	}
	tw.Flush()
	fmt.Fprintf(c.stdout, "\ndecisions: allow %d, deny %d, step_up %d; rows take %d bytes in PostgreSQL\n", st.ByDecision["allow"], st.ByDecision["deny"], st.ByDecision["step_up"], st.Bytes)
	if len(st.ByPrincipal) > 0 {
		fmt.Fprintln(c.stdout, "\nby principal:")
		for _, p := range st.ByPrincipal {
			fmt.Fprintf(c.stdout, "  %8d  %s\n", p.Count, p.Key)
		}
	}
	if len(st.PerHour) > 0 {
		fmt.Fprintln(c.stdout, "\nper hour (UTC):")
		for _, h := range st.PerHour {
			fmt.Fprintf(c.stdout, "  %s  %d\n", h.Key, h.Count)
		}
	}
	return nil
}

// parseSince reads --since: a duration ago or an RFC 3339 time.
func parseSince(command, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		return time.Now().Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return t, usagef("%s: --since %q: want a duration (24h) or an RFC 3339 time", command, v)
	}
	return t, nil
}

// fleetEventsCmd is agentpdp fleet events.
type fleetEventsCmd struct {
	fleetFlags
	origin, kind, since string
	limit               int
}

func newFleetEventsCmd() *cobra.Command {
	c := &fleetEventsCmd{}
	cmd := &cobra.Command{
		Use:   "events --pg DSN [--origin NAME] [--kind fork|rollback|gap|bad_signature]",
		Short: "List fleet events (forks, rollbacks, gaps, bad signatures), newest first; exit 1 if there are any",
		Args:  noArgs,
		RunE:  runE(c, nil),
	}
	c.register(cmd.Flags())
	fl := cmd.Flags()
	fl.StringVar(&c.origin, "origin", "", "only this origin")
	fl.StringVar(&c.kind, "kind", "", "only this kind: fork, rollback, gap or bad_signature")
	fl.StringVar(&c.since, "since", "", "only events after this: a duration ago (24h) or an RFC 3339 time")
	fl.IntVar(&c.limit, "limit", 100, "at most `N` events")
	return cmd
}

// Run lists the events.
func (c *fleetEventsCmd) Run(ctx context.Context) error {
	switch c.kind {
	case "", fleet.EventFork, fleet.EventRollback, fleet.EventGap, fleet.EventBadSignature:
	default:
		return usagef("fleet events: --kind %q: want fork, rollback, gap or bad_signature", c.kind)
	}
	since, err := parseSince("fleet events", c.since)
	if err != nil {
		return err
	}
	s, err := c.open(ctx, "fleet events")
	if err != nil {
		return err
	}
	defer s.Close()
	evs, err := fleet.Events(ctx, s, fleet.EventFilter{Origin: c.origin, Kind: c.kind, Since: since, Limit: c.limit})
	if err != nil {
		return err
	}
	if c.asJSON {
		enc := json.NewEncoder(c.stdout)
		for _, e := range evs {
			enc.Encode(e)
		}
	} else {
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTIME\tORIGIN\tKIND\tSEQ\tPROBLEM")
		for _, e := range evs {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\n", e.ID, e.Time.UTC().Format(time.RFC3339), e.Origin, e.Kind, e.Seq, e.Problem)
		}
		tw.Flush()
	}
	if len(evs) > 0 {
		return exitError{exitFail, errSilent}
	}
	return nil
}
