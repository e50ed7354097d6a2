package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentpdp/agentpdp/decisionlog"
)

// sinksCmd is agentpdp sinks: each sink's cursor, lag and where it
// started, read from the log's database (the daemon need not run).
type sinksCmd struct {
	streams
	db, config    string
	asJSON, local bool
}

func newSinksCmd() *cobra.Command {
	c := &sinksCmd{}
	cmd := &cobra.Command{
		Use:   "sinks [--config FILE] [--db FILE]",
		Short: "Each sink's cursor, lag and start (oldest, or now from which seq), from the log's database",
		Long: `Each sink's cursor, lag and start, read from the decision log's database: the daemon need not run.

A sink's start is recorded with its cursor the first time the sink is seen (by serve, ship or
log prune): "oldest" ships every row in the log, "now" ships the rows after start_seq, the log's
last seq at that moment. With --config, sinks the configuration lists but the log has not seen
yet are shown too, with the start they will get.`,
		Args: noArgs,
		RunE: runE(c, nil),
	}
	fl := cmd.Flags()
	fl.StringVar(&c.db, "db", "", "decision log `file` (default: the config's db, else "+DefaultConfig().DB+")")
	fl.StringVar(&c.config, "config", "", "agentpdp config `file`: its db, and the sinks it lists")
	fl.BoolVar(&c.asJSON, "json", false, "one JSON object per sink")
	localFlag(fl, &c.local)
	return cmd
}

// sinkRow is one sink as agentpdp sinks shows it.
type sinkRow struct {
	decisionlog.CursorState
	Lag        int64  `json:"lag"`
	Seen       bool   `json:"seen"`                 // the log has the sink's cursor
	Configured string `json:"configured,omitempty"` // the start the config gives, with --config
}

func (c *sinksCmd) Run(ctx context.Context) error {
	var cfg *Config
	if c.config != "" {
		loaded, err := loadValidConfig(c.config)
		if err != nil {
			return err
		}
		cfg = &loaded
		if c.db == "" {
			c.db = cfg.DB
		}
	}
	if c.db == "" {
		c.db = DefaultConfig().DB
	}
	r, err := openLog("sinks", c.db)
	if err != nil {
		return err
	}
	defer r.Close()
	states, err := r.CursorStates(ctx)
	if err != nil {
		return err
	}
	last, err := r.LastSeq(ctx)
	if err != nil {
		return err
	}
	var rows []sinkRow
	index := map[string]int{}
	for _, st := range states {
		index[st.Sink] = len(rows)
		rows = append(rows, sinkRow{CursorState: st, Lag: max(last-st.Seq, 0), Seen: true})
	}
	if cfg != nil {
		for _, sc := range cfg.Sinks {
			start := sc.Start
			if start == "" {
				start = decisionlog.StartOldest
			}
			if i, ok := index[sc.Name]; ok {
				rows[i].Configured = start
				continue
			}
			rows = append(rows, sinkRow{CursorState: decisionlog.CursorState{Sink: sc.Name, Start: start}, Configured: start})
		}
	}
	// By name, so that a sink keeps its place in the list when it is first seen.
	slices.SortFunc(rows, func(a, b sinkRow) int { return strings.Compare(a.Sink, b.Sink) })
	if c.asJSON {
		enc := json.NewEncoder(c.stdout)
		for _, row := range rows {
			if err := enc.Encode(row); err != nil {
				return err
			}
		}
		return nil
	}
	if len(rows) == 0 {
		fmt.Fprintf(c.stdout, "no sink has shipped from %s yet (give --config to list the configured ones)\n", c.db)
		return nil
	}
	loc := zone(c.local)
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SINK\tCURSOR\tLAG\tSTART")
	for _, row := range rows {
		if !row.Seen {
			fmt.Fprintf(tw, "%s\t-\t-\t%s\n", row.Sink, notSeenStart(row.Start))
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", row.Sink, row.Seq, row.Lag, describeStart(row.CursorState, row.Configured, loc))
	}
	return tw.Flush()
}

// describeStart says where a sink started, and whether the configuration
// asks for another start than the one recorded.
func describeStart(st decisionlog.CursorState, configured string, loc *time.Location) string {
	var s string
	switch {
	case st.Start == decisionlog.StartNow:
		s = fmt.Sprintf("now: ships the rows after seq %d", st.StartSeq)
	default:
		s = "oldest: ships every row"
	}
	if st.Started != nil {
		s += ", first seen " + showTime(*st.Started, loc)
	}
	if configured != "" && configured != st.Start {
		s += fmt.Sprintf(" (the config says start: %s, which applies only to a sink never seen before)", configured)
	}
	return s
}

func notSeenStart(start string) string {
	if start == decisionlog.StartNow {
		return "not seen yet: start: now will ship the rows after the log's last seq when serve, ship or log prune first sees it"
	}
	return "not seen yet: start: oldest will ship every row in the log"
}
