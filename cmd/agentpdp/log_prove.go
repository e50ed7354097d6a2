package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/agentpdp/agentpdp/decisionlog"
)

// logProveCmd is agentpdp log prove: one self-contained proof file, for an
// auditor who has the log's public key and nothing else.
type logProveCmd struct {
	streams
	db          string
	consistency bool
	seq         bool
	args        []string
}

func newLogProveCmd() *cobra.Command {
	c := &logProveCmd{}
	cmd := &cobra.Command{
		Use:   "prove (DECISION_ID | --seq SEQ | --consistency OLD NEW) --db FILE",
		Short: "Print a proof (JSON) that a decision is in the log, or that one checkpoint's tree extends another's; check it with log verify-proof",
		Long: `Print one JSON file, checkable offline with agentpdp log verify-proof and the
log's public key (docs/proofs.md describes it):

  agentpdp log prove DECISION_ID            the row, its RFC 6962 inclusion proof and the
                                            newest signed checkpoint (C2SP signed note)
  agentpdp log prove --seq SEQ              the same for any row
  agentpdp log prove --consistency OLD NEW  a consistency proof between the trees of OLD
                                            and NEW rows (NEW must be a checkpoint's size)`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usagef("log prove: want one DECISION_ID, --seq SEQ, or --consistency OLD NEW")
			}
			return nil
		},
		RunE: runE(c, &c.args),
	}
	fl := cmd.Flags()
	dbFlag(fl, &c.db)
	fl.BoolVar(&c.consistency, "consistency", false, "prove the tree of OLD rows a prefix of the tree of NEW rows")
	fl.BoolVar(&c.seq, "seq", false, "the argument is a row's seq, not a decision id")
	return cmd
}

func (c *logProveCmd) Run(ctx context.Context) error {
	r, err := openLog("log prove", c.db)
	if err != nil {
		return err
	}
	defer r.Close()
	var out any
	switch {
	case c.consistency:
		if len(c.args) != 2 {
			return usagef("log prove --consistency: want OLD and NEW tree sizes")
		}
		old, err1 := strconv.ParseInt(c.args[0], 10, 64)
		nw, err2 := strconv.ParseInt(c.args[1], 10, 64)
		if err1 != nil || err2 != nil {
			return usagef("log prove --consistency: OLD and NEW are tree sizes (numbers), got %q %q", c.args[0], c.args[1])
		}
		if out, err = r.ProveConsistency(ctx, old, nw); err != nil {
			return exitError{exitFail, err}
		}
	case len(c.args) != 1:
		return usagef("log prove: want one DECISION_ID (or --seq SEQ)")
	case c.seq:
		seq, err := strconv.ParseInt(c.args[0], 10, 64)
		if err != nil {
			return usagef("log prove --seq: %q is not a number", c.args[0])
		}
		out, err = r.ProveRow(ctx, seq)
		if errors.Is(err, decisionlog.ErrNotFound) {
			return exitError{exitFail, fmt.Errorf("log prove: no row with seq %d in %s (log tail lists seqs, in its first column)", seq, c.db)}
		}
		if err != nil {
			return exitError{exitFail, err}
		}
	default:
		out, err = r.ProveDecision(ctx, c.args[0])
		if errors.Is(err, decisionlog.ErrNotFound) {
			// As log show: the commonest slip is a seq or a prefix where
			// the full id belongs.
			return exitError{exitFail, fmt.Errorf("log prove: no decision with id %q in %s (log query lists decision ids, in its last column; --seq SEQ proves a row by its seq)", c.args[0], c.db)}
		}
		if err != nil {
			return exitError{exitFail, err}
		}
	}
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
