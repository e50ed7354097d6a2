package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/plugins"
)

// newShipper builds the configured sinks over a read-only view of the log
// at db and its cursors. close releases them.
func newShipper(ctx context.Context, db string, sinks []plugins.Config, logger *slog.Logger) (s *plugins.Shipper, close func(), err error) {
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
	s = &plugins.Shipper{Reader: r, Cursors: cursors, Origin: origin, Logger: logger.With("component", "ship")}
	for _, c := range sinks {
		sink, err := plugins.NewWithLogger(c, logger)
		if err != nil {
			return nil, close, fmt.Errorf("config: %w", err)
		}
		closers = append(closers, sink.Close)
		s.Targets = append(s.Targets, plugins.Target{Sink: sink, BatchSize: c.BatchSize})
	}
	return s, close, nil
}

func sinkNames(sinks []plugins.Config) []string {
	names := make([]string, len(sinks))
	for i, s := range sinks {
		names[i] = s.Name
	}
	return names
}

func newShipCmd() *cobra.Command {
	var db, config string
	var once, asJSON bool
	cmd := &cobra.Command{
		Use:   "ship --db FILE --config FILE [--once]",
		Short: "Ship the log to the configured sinks from a separate process (serve ships too)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if config == "" {
				return usagef("ship: --config is required (it lists the sinks)")
			}
			cfg, err := LoadConfig(config)
			if err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			if db == "" {
				db = cfg.DB
			}
			if len(cfg.Sinks) == 0 {
				return fmt.Errorf("ship: %s lists no sinks", config)
			}
			logger := newLogger(cmd.ErrOrStderr(), cfg.Log.Level, cfg.Log.Format)
			s, closeAll, err := newShipper(cmd.Context(), db, cfg.Sinks, logger)
			if err != nil {
				return err
			}
			defer closeAll()
			if once {
				if err := s.Once(cmd.Context()); err != nil {
					return exitError{exitFail, err}
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				for _, st := range s.Status(cmd.Context()) {
					if asJSON {
						enc.Encode(st)
						continue
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s: shipped to seq %d (%d rows this run)\n", st.Sink, st.Cursor, st.Shipped)
				}
				return nil
			}
			s.Run(cmd.Context())
			if err := cmd.Context().Err(); err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&db, "db", "", "decision log `file` (default: the config's)")
	fl.StringVar(&config, "config", "", "agentpdp config `file` with the sinks")
	fl.BoolVar(&once, "once", false, "ship what is there and exit (1 if a sink failed)")
	fl.BoolVar(&asJSON, "json", false, "with --once: each sink's status as one JSON object per line")
	return cmd
}

func newLogPruneCmd() *cobra.Command {
	var db string
	var maxAge time.Duration
	var maxRows int64
	var sinks []string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "prune --db FILE (--max-age D | --max-rows N) [--sink NAME…]",
		Short: "Delete the oldest rows, up to a signed checkpoint, and only what every named sink has shipped",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if maxAge <= 0 && maxRows <= 0 {
				return usagef("log prune: give --max-age or --max-rows")
			}
			r, err := decisionlog.OpenReader(db)
			if err != nil {
				return err
			}
			defer r.Close()
			if len(sinks) == 0 {
				// Every sink that ever shipped from this log holds back pruning.
				cursors, err := r.Cursors(cmd.Context())
				if err != nil {
					return err
				}
				for name := range cursors {
					sinks = append(sinks, name)
				}
			}
			res, err := prune(cmd.Context(), r, db, maxAge, maxRows, sinks)
			if err != nil {
				return exitError{exitFail, err}
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pruned %d rows; the log now starts at the checkpoint at seq %d\n", res.Deleted, res.Anchor)
			return nil
		},
	}
	fl := cmd.Flags()
	dbFlag(fl, &db)
	fl.DurationVar(&maxAge, "max-age", 0, "delete rows older than this")
	fl.Int64Var(&maxRows, "max-rows", 0, "keep about this many rows")
	fl.StringSliceVar(&sinks, "sink", nil, "sinks whose cursors hold rows back (default: every sink that has a cursor)")
	fl.BoolVar(&asJSON, "json", false, "one JSON object")
	return cmd
}

// prune applies retention to the log file at db, outside the daemon.
func prune(ctx context.Context, r *decisionlog.Reader, db string, maxAge time.Duration, maxRows int64, sinks []string) (decisionlog.PruneResult, error) {
	bound, err := r.PruneBound(ctx, maxAge, maxRows, sinks, time.Now())
	if err != nil {
		return decisionlog.PruneResult{}, err
	}
	if bound == 0 {
		return decisionlog.PruneResult{}, errors.New("nothing may be pruned yet: no row is old enough and shipped by every sink")
	}
	return decisionlog.PruneFile(ctx, db, bound)
}
