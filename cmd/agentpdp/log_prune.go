package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/internal/plural"
)

// logPruneCmd is agentpdp log prune: retention applied outside the daemon.
type logPruneCmd struct {
	streams
	config  string
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
		Use:   "prune --config FILE [--db FILE] [--signing-key FILE] (--max-age D | --max-rows N) [--sink NAME…]",
		Short: "Delete the oldest rows, up to a signed checkpoint, and only what every configured sink has shipped, leaving a signed record",
		Args:  noArgs,
		RunE:  runE(c, nil),
	}
	fl := cmd.Flags()
	fl.StringVar(&c.config, "config", "", "the daemon's configuration `file`: every sink it lists holds back what it has not shipped (required)")
	fl.StringVar(&c.db, "db", "", "decision log `file` (default: the config's db)")
	fl.DurationVar(&c.maxAge, "max-age", 0, "delete rows older than this")
	fl.Int64Var(&c.maxRows, "max-rows", 0, "keep about this many rows")
	fl.StringSliceVar(&c.sinks, "sink", nil, "more sinks whose cursors hold rows back, beside the configured ones")
	fl.StringVar(&c.key, "signing-key", "", "the log's Ed25519 signing key `file`: the prune record is signed with it (default: the config's signing_key)")
	fl.BoolVar(&c.asJSON, "json", false, "one JSON object")
	return cmd
}

func (c *logPruneCmd) Run(ctx context.Context) error {
	if c.maxAge <= 0 && c.maxRows <= 0 {
		return usagef("log prune: give --max-age or --max-rows")
	}
	// Without the daemon's configuration, a sink that never connected has
	// no cursor here, and its rows would look shipped: refuse.
	if c.config == "" {
		return usagef("log prune: --config FILE is required: the sinks it configures hold back every row they have not shipped")
	}
	cfg, err := loadValidConfig(c.config)
	if err != nil {
		return err
	}
	if c.db == "" {
		c.db = cfg.DB
	}
	if c.key == "" {
		c.key = cfg.SigningKey
	}
	sinks := append(sinkNames(cfg.Sinks), c.sinks...)
	b, err := readFlagFile("log prune", "signing-key", c.key)
	if err != nil {
		return fmt.Errorf("%w (a prune leaves a record signed with the log's key)", err)
	}
	key, err := decisionlog.ParsePrivateKey(b)
	if err != nil {
		return fmt.Errorf("log prune: %s: %w", c.key, err)
	}
	r, err := openLog("log prune", c.db)
	if err != nil {
		return err
	}
	defer r.Close()
	// A configured sink never seen before is seen now: one with start: now
	// holds back only the rows after this moment.
	if err := recordSinkStarts(ctx, c.db, cfg.Sinks); err != nil {
		return exitError{exitFail, fmt.Errorf("log prune: %w", err)}
	}
	res, err := prune(ctx, r, c.db, decisionlog.Retention{MaxAge: c.maxAge, MaxRows: c.maxRows, Sinks: sinks}, key)
	if err != nil {
		return exitError{exitFail, err}
	}
	if c.asJSON {
		return json.NewEncoder(c.stdout).Encode(res)
	}
	fmt.Fprintf(c.stdout, "pruned %s; the log now starts at the checkpoint at seq %d; the signed prune record is seq %d\n", plural.Count(res.Deleted, "row", "rows"), res.Anchor, res.Record)
	if len(res.Kept) > 0 {
		fmt.Fprintf(c.stdout, "kept %s that retained decisions refer to\n", plural.Count(len(res.Kept), "policy load", "policy loads"))
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
