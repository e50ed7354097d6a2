package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentpdp/agentpdp/decisionlog"
)

// logPruneCmd is agentpdp log prune: retention applied outside the daemon.
type logPruneCmd struct {
	streams
	db      string
	maxAge  time.Duration
	maxRows int64
	sinks   []string
	key     string
	asJSON  bool
}

func newLogPruneCmd() *cobra.Command {
	c := &logPruneCmd{}
	cmd := &cobra.Command{
		Use:   "prune --db FILE --signing-key FILE (--max-age D | --max-rows N) [--sink NAME…]",
		Short: "Delete the oldest rows, up to a signed checkpoint, and only what every named sink has shipped, leaving a signed record",
		Args:  noArgs,
		RunE:  runE(c, nil),
	}
	fl := cmd.Flags()
	dbFlag(fl, &c.db)
	fl.DurationVar(&c.maxAge, "max-age", 0, "delete rows older than this")
	fl.Int64Var(&c.maxRows, "max-rows", 0, "keep about this many rows")
	fl.StringSliceVar(&c.sinks, "sink", nil, "sinks whose cursors hold rows back (default: every sink that has a cursor)")
	fl.StringVar(&c.key, "signing-key", "./var/signing.key", "the log's Ed25519 signing key `file`: the prune record is signed with it")
	fl.BoolVar(&c.asJSON, "json", false, "one JSON object")
	return cmd
}

func (c *logPruneCmd) Run(ctx context.Context) error {
	if c.maxAge <= 0 && c.maxRows <= 0 {
		return usagef("log prune: give --max-age or --max-rows")
	}
	b, err := os.ReadFile(c.key)
	if err != nil {
		return fmt.Errorf("log prune: a prune leaves a record signed with the log's key: %w", err)
	}
	key, err := decisionlog.ParsePrivateKey(b)
	if err != nil {
		return fmt.Errorf("log prune: %s: %w", c.key, err)
	}
	r, err := decisionlog.OpenReader(c.db)
	if err != nil {
		return err
	}
	defer r.Close()
	if len(c.sinks) == 0 {
		// Every sink that ever shipped from this log holds back pruning.
		cursors, err := r.Cursors(ctx)
		if err != nil {
			return err
		}
		for name := range cursors {
			c.sinks = append(c.sinks, name)
		}
	}
	res, err := prune(ctx, r, c.db, decisionlog.Retention{MaxAge: c.maxAge, MaxRows: c.maxRows, Sinks: c.sinks}, key)
	if err != nil {
		return exitError{exitFail, err}
	}
	if c.asJSON {
		return json.NewEncoder(c.stdout).Encode(res)
	}
	fmt.Fprintf(c.stdout, "pruned %d rows; the log now starts at the checkpoint at seq %d; the signed prune record is seq %d\n", res.Deleted, res.Anchor, res.Record)
	if len(res.Kept) > 0 {
		fmt.Fprintf(c.stdout, "kept %d policy loads that retained decisions refer to\n", len(res.Kept))
	}
	return nil
}

// prune applies retention to the log file at db, outside the daemon.
func prune(ctx context.Context, r *decisionlog.Reader, db string, rule decisionlog.Retention, key ed25519.PrivateKey) (decisionlog.PruneResult, error) {
	bound, err := r.PruneBound(ctx, rule.MaxAge, rule.MaxRows, rule.Sinks, time.Now())
	if err != nil {
		return decisionlog.PruneResult{}, err
	}
	if bound == 0 {
		return decisionlog.PruneResult{}, errors.New("nothing may be pruned yet: no row is old enough and shipped by every sink")
	}
	return decisionlog.PruneFile(ctx, db, bound, rule.Rule(), key)
}
