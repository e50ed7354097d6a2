package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/spf13/cobra"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/internal/plural"
	"github.com/agentpdp/agentpdp/plugins/shipper"
	"github.com/agentpdp/agentpdp/plugins/sink"
)

// newShipper builds the configured sinks over a read-only view of the log
// at db and its cursors. close releases them.
func newShipper(ctx context.Context, db string, sinks []sink.Config, logger *slog.Logger, restarts *atomic.Int64) (s *shipper.Shipper, close func(), err error) {
	var closers []func() error
	close = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	defer func() {
		if err != nil {
			close()
		}
	}()
	r, err := decisionlog.OpenReader(db)
	if err != nil {
		return nil, close, err
	}
	closers = append(closers, r.Close)
	cursors, err := decisionlog.OpenCursors(db)
	if err != nil {
		return nil, close, err
	}
	closers = append(closers, cursors.Close)
	origin, err := r.Origin(ctx)
	if err != nil {
		return nil, close, err
	}
	s = &shipper.Shipper{Reader: r, Cursors: cursors, Origin: origin, Logger: logger.With("component", "ship")}
	for _, c := range sinks {
		sk, err := sink.NewWith(c, logger, restarts)
		if err != nil {
			return nil, close, err // names the sink
		}
		closers = append(closers, sk.Close)
		s.Targets = append(s.Targets, shipper.Target{Sink: sk, BatchSize: c.BatchSize, BatchMaxBytes: c.BatchMaxBytes, Start: c.Start})
	}
	// Record where new sinks start now, so that start: now means the start
	// of this process; a failure is retried by each sink before it ships.
	if err := s.Start(ctx); err != nil {
		logger.Warn("could not record where the sinks start; each sink retries before it ships", "err", err)
	}
	return s, close, nil
}

// recordSinkStarts records where each configured sink never seen before
// starts (its start key), as the shipper would: for commands that act on
// the cursors without shipping, such as log prune.
func recordSinkStarts(ctx context.Context, db string, sinks []sink.Config) error {
	if len(sinks) == 0 {
		return nil
	}
	cursors, err := decisionlog.OpenCursors(db)
	if err != nil {
		return err
	}
	defer cursors.Close()
	for _, c := range sinks {
		start := c.Start
		if start == "" {
			start = decisionlog.StartOldest
		}
		if _, err := cursors.Start(ctx, c.Name, start); err != nil {
			return err
		}
	}
	return nil
}

func sinkNames(sinks []sink.Config) []string {
	names := make([]string, len(sinks))
	for i, s := range sinks {
		names[i] = s.Name
	}
	return names
}

// shipCmd is agentpdp ship: the log shipped to sinks from its own process.
type shipCmd struct {
	streams
	db, config   string
	once, asJSON bool
}

func newShipCmd() *cobra.Command {
	c := &shipCmd{}
	cmd := &cobra.Command{
		Use:   "ship --db FILE --config FILE [--once]",
		Short: "Ship the log to the configured sinks from a separate process (serve ships too)",
		Args:  noArgs,
		RunE:  runE(c, nil),
	}
	fl := cmd.Flags()
	fl.StringVar(&c.db, "db", "", "decision log `file` (default: the config's)")
	fl.StringVar(&c.config, "config", "", "agentpdp config `file` with the sinks")
	fl.BoolVar(&c.once, "once", false, "ship what is there and exit (1 if a sink failed)")
	fl.BoolVar(&c.asJSON, "json", false, "with --once: each sink's status as one JSON object per line")
	return cmd
}

func (c *shipCmd) Run(ctx context.Context) error {
	if c.config == "" {
		return usagef("ship: --config is required (it lists the sinks)")
	}
	cfg, err := loadValidConfig(c.config)
	if err != nil {
		return err
	}
	if c.db == "" {
		c.db = cfg.DB
	}
	if len(cfg.Sinks) == 0 {
		return fmt.Errorf("ship: %s lists no sinks", c.config)
	}
	logger := newLogger(c.stderr, cfg.Log.Level, cfg.Log.Format)
	s, closeAll, err := newShipper(ctx, c.db, cfg.Sinks, logger, nil)
	if err != nil {
		return err
	}
	defer closeAll()
	if c.once {
		if err := s.Once(ctx); err != nil {
			// Nothing is lost: the cursor stays where the sink last acknowledged.
			return exitError{exitFail, fmt.Errorf("%w; the rows not shipped stay in the log and ship on the next run", err)}
		}
		enc := json.NewEncoder(c.stdout)
		for _, st := range s.Status(ctx) {
			if c.asJSON {
				enc.Encode(st)
				continue
			}
			fmt.Fprintf(c.stdout, "%s: shipped to seq %d (%s this run)\n", st.Sink, st.Cursor, plural.Count(st.Shipped, "row", "rows"))
		}
		return nil
	}
	s.Run(ctx)
	if err := ctx.Err(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
