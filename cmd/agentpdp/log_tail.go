package main

import (
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentpdp/agentpdp/decisionlog"
)

func newLogTailCmd() *cobra.Command {
	var db string
	var n int
	var follow, asJSON bool
	cmd := &cobra.Command{
		Use:   "tail [-f] [-n N]",
		Short: "Print the last rows of every kind, oldest first; -f follows new rows",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := decisionlog.OpenReader(db)
			if err != nil {
				return err
			}
			defer r.Close()
			ctx := cmd.Context()
			last, err := r.Query(ctx, decisionlog.Filter{Limit: n})
			if err != nil {
				return err
			}
			slices.Reverse(last)
			if err := printEntries(cmd, last, asJSON); err != nil {
				return err
			}
			if !follow {
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
				if err := printEntries(cmd, batch, asJSON); err != nil {
					return err
				}
			}
		},
	}
	fl := cmd.Flags()
	dbFlag(fl, &db)
	fl.IntVarP(&n, "lines", "n", 20, "how many rows to print first")
	fl.BoolVarP(&follow, "follow", "f", false, "keep printing rows as they are written")
	fl.BoolVar(&asJSON, "json", false, "one JSON object per line")
	return cmd
}
