package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/internal/plural"
)

// logVerifyProofCmd is agentpdp log verify-proof: a proof file checked with
// the public key alone, no database.
type logVerifyProofCmd struct {
	streams
	pubkey string
	asJSON bool
	args   []string
}

func newLogVerifyProofCmd() *cobra.Command {
	c := &logVerifyProofCmd{}
	cmd := &cobra.Command{
		Use:   "verify-proof FILE --pubkey FILE",
		Short: "Check a proof from log prove offline, with the log's public key and no database; exit 0 only if it holds",
		Args:  oneArg("proof file (- for stdin)"),
		RunE:  runE(c, &c.args),
	}
	fl := cmd.Flags()
	fl.StringVar(&c.pubkey, "pubkey", "", "the log's public key `file` (PEM, from agentpdp keygen or serve)")
	fl.BoolVar(&c.asJSON, "json", false, "one JSON object")
	return cmd
}

func (c *logVerifyProofCmd) Run(ctx context.Context) error {
	if c.pubkey == "" {
		return usagef("log verify-proof: --pubkey is required: a proof is only as good as the key it is checked with")
	}
	kb, err := readFlagFile("log verify-proof", "pubkey", c.pubkey)
	if err != nil {
		return err
	}
	pub, err := decisionlog.ParsePublicKey(kb)
	if err != nil {
		return fmt.Errorf("%s: %w", c.pubkey, err)
	}
	var b []byte
	if c.args[0] == "-" {
		b, err = io.ReadAll(io.LimitReader(c.stdin, 16<<20))
	} else {
		b, err = os.ReadFile(c.args[0])
		if errors.Is(err, fs.ErrNotExist) {
			return usagef("log verify-proof: %s: no such file; give a proof written by agentpdp log prove", c.args[0])
		}
	}
	if err != nil {
		return fmt.Errorf("log verify-proof: %w", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return usagef("log verify-proof: %s is empty: write a proof into it with agentpdp log prove DECISION_ID > FILE (it says when no signed checkpoint covers the row yet)", c.args[0])
	}
	res, err := decisionlog.VerifyProof(b, pub)
	if err != nil {
		if c.asJSON {
			json.NewEncoder(c.stdout).Encode(map[string]any{"ok": false, "problem": err.Error()})
			return exitError{exitFail, errSilent}
		}
		return exitError{exitFail, fmt.Errorf("log verify-proof FAILED: %w", err)}
	}
	if c.asJSON {
		return json.NewEncoder(c.stdout).Encode(map[string]any{"ok": true, "result": res})
	}
	switch res.Format {
	case decisionlog.InclusionFormat:
		what := fmt.Sprintf("the %s row at seq %d", res.Kind, res.Seq)
		if res.DecisionID != "" {
			what = fmt.Sprintf("decision %s (seq %d)", res.DecisionID, res.Seq)
		}
		fmt.Fprintf(c.stdout, "ok: %s is in log %s, in the tree of %s signed by key %s\n", what, res.Origin, plural.Count(res.TreeSize, "row", "rows"), res.KeyID)
	default:
		old := "an old root the proof states but no checkpoint signs: compare it with your copy of that checkpoint"
		if res.OldCheckpoint {
			old = "the signed checkpoint the proof carries"
		}
		fmt.Fprintf(c.stdout, "ok: in log %s the tree of %s extends the tree of %s (%s); the new checkpoint is signed by key %s\n", res.Origin, plural.Count(res.TreeSize, "row", "rows"), plural.Count(res.OldSize, "row", "rows"), old, res.KeyID)
	}
	return nil
}
