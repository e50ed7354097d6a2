package main

import (
	"context"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentpdp/agentpdp/decisionlog"
)

// logTailCmd is agentpdp log tail: the newest rows, and then new ones.
type logTailCmd struct {
	streams
	local          bool // --local
	db             string
	n              int
	follow, asJSON bool
}

func newLogTailCmd() *cobra.Command {
	c := &logTailCmd{}
	cmd := &cobra.Command{
		Use:   "tail [-f] [-n N]",
		Short: "Print the last rows of every kind, oldest first; -f follows new rows",
		Args:  noArgs,
		RunE:  runE(c, nil),
	}
	fl := cmd.Flags()
	dbFlag(fl, &c.db)
	fl.IntVarP(&c.n, "lines", "n", 20, "how many rows to print first")
	fl.BoolVarP(&c.follow, "follow", "f", false, "keep printing rows as they are written")
	fl.BoolVar(&c.asJSON, "json", false, "one JSON object per line")
	localFlag(fl, &c.local)
	return cmd
}

func (c *logTailCmd) Run(ctx context.Context) error {
	r, err := openLog("log tail", c.db)
	if err != nil {
		return err
	}
	defer r.Close()
	last, err := r.Query(ctx, decisionlog.Filter{Limit: c.n})
	if err != nil {
		return err
	}
	slices.Reverse(last)
	if err := printEntries(c.stdout, last, c.asJSON, zone(c.local)); err != nil {
		return err
	}
	if !c.follow {
		return nil
	}
	var next int64 = 1
	if len(last) > 0 {
		next = last[len(last)-1].Seq + 1
	}
	// Poll: the log is written by another process, and SQLite has no
	// change notification across processes.
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		var batch []*decisionlog.Entry
		if err := r.Scan(ctx, next, func(e *decisionlog.Entry) error {
			batch = append(batch, e)
			next = e.Seq + 1
			return nil
		}); err != nil {
			return err
		}
		if err := printEntries(c.stdout, batch, c.asJSON, zone(c.local)); err != nil {
			return err
		}
	}
}
