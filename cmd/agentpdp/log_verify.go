package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/decisionlog/fleet"
	"github.com/agentpdp/agentpdp/internal/plural"
)

// logVerifyCmd is agentpdp log verify: the hash chain and checkpoints checked.
type logVerifyCmd struct {
	streams
	db, pubkey, trusted string
	signingKey          string
	witness, witnessKey string
	asJSON              bool
}

func newLogVerifyCmd() *cobra.Command {
	c := &logVerifyCmd{}
	cmd := &cobra.Command{
		Use:   "verify --db FILE [--pubkey FILE] [--signing-key FILE] [--trusted-checkpoint FILE] [--witness URL --witness-key FILE]",
		Short: "Recompute the hash chain and check every checkpoint; exit 0 only if nothing was changed, removed or reordered",
		Args:  noArgs,
		RunE:  runE(c, nil),
	}
	fl := cmd.Flags()
	dbFlag(fl, &c.db)
	fl.StringVar(&c.pubkey, "pubkey", "", "public key `file` that checks checkpoint signatures (default ./var/signing.key.pub if present)")
	fl.StringVar(&c.signingKey, "signing-key", "", "the log's Ed25519 signing key `file`: authenticates the writer's tail state file (FILE.state) that verify checks the log against")
	fl.StringVar(&c.trusted, "trusted-checkpoint", "", "a checkpoint kept outside the log (a checkpoint row as JSON, or its signed note): catches truncation and rewriting, also after pruning")
	fl.StringVar(&c.witness, "witness", "", "the collector's `URL` (https://collector:8443): its newest checkpoint cosigned for this log's origin must match the log")
	fl.StringVar(&c.witnessKey, "witness-key", "", "the collector's public key `file` (witness_key's .pub), which checks the cosignature")
	fl.BoolVar(&c.asJSON, "json", false, "one JSON object")
	return cmd
}

func (c *logVerifyCmd) Run(ctx context.Context) error {
	opts := decisionlog.VerifyOptions{}
	if c.pubkey == "" {
		// The key serve creates by default, if it is here.
		if def := DefaultConfig().SigningKey + ".pub"; fileExists(def) {
			c.pubkey = def
		}
	}
	if c.pubkey != "" {
		b, err := readFlagFile("log verify", "pubkey", c.pubkey)
		if err != nil {
			return err
		}
		if opts.PublicKey, err = decisionlog.ParsePublicKey(b); err != nil {
			return fmt.Errorf("%s: %w", c.pubkey, err)
		}
	}
	if c.trusted != "" {
		b, err := readFlagFile("log verify", "trusted-checkpoint", c.trusted)
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(b)) == 0 {
			return usagef("log verify: --trusted-checkpoint %s is empty: save a checkpoint row in it with agentpdp log export --kind checkpoint | tail -1 (the first is signed within checkpoints.every, 1m, of the first decision)", c.trusted)
		}
		if opts.Trusted, err = decisionlog.ParseCheckpoint(b); err != nil {
			return fmt.Errorf("log verify: --trusted-checkpoint %s: %w", c.trusted, err)
		}
	}
	if c.signingKey != "" {
		b, err := readFlagFile("log verify", "signing-key", c.signingKey)
		if err != nil {
			return err
		}
		if opts.StateKey, err = decisionlog.ParsePrivateKey(b); err != nil {
			return fmt.Errorf("log verify: %s: %w", c.signingKey, err)
		}
	}
	r, err := openLog("log verify", c.db)
	if err != nil {
		return err
	}
	defer r.Close()
	opts.StatePath = decisionlog.StatePath(c.db)
	var witnessed *fleet.Cosigned
	if c.witness != "" || c.witnessKey != "" {
		if c.witness == "" || c.witnessKey == "" || c.trusted != "" || opts.PublicKey == nil {
			return usagef("log verify: --witness and --witness-key go together, need --pubkey, and replace --trusted-checkpoint")
		}
		if witnessed, opts.Trusted, err = c.fetchWitnessed(ctx, r); err != nil {
			if errors.As(err, new(usageError)) {
				return err
			}
			if c.asJSON {
				json.NewEncoder(c.stdout).Encode(map[string]any{"ok": false, "problem": err.Error()})
				return exitError{exitFail, errSilent}
			}
			return exitError{exitFail, fmt.Errorf("log verify FAILED: %w", err)}
		}
	}
	stderr := c.stderr
	if f, ok := stderr.(*os.File); ok && isTerminal(f) && !c.asJSON {
		opts.Progress = func(seq, last int64) {
			fmt.Fprintf(stderr, "\rverifying: %d of %d rows (%d%%)", seq, last, seq*100/max(last, 1))
			if seq >= last {
				fmt.Fprintln(stderr)
			}
		}
	}
	rep, err := r.Verify(ctx, opts)
	var ce *decisionlog.ChainError
	if errors.As(err, &ce) {
		if opts.Progress != nil {
			fmt.Fprintln(stderr)
		}
		if c.asJSON {
			json.NewEncoder(c.stdout).Encode(map[string]any{"ok": false, "seq": ce.Seq, "problem": ce.Problem})
			return exitError{exitFail, errSilent}
		}
		return exitError{exitFail, fmt.Errorf("log verify FAILED at seq %d: %s", ce.Seq, ce.Problem)}
	}
	var se *decisionlog.TailStateError
	if errors.As(err, &se) {
		if c.asJSON {
			json.NewEncoder(c.stdout).Encode(map[string]any{"ok": false, "problem": se.Problem})
			return exitError{exitFail, errSilent}
		}
		return exitError{exitFail, fmt.Errorf("log verify FAILED: %s", se.Problem)}
	}
	if err != nil {
		return err
	}
	if c.asJSON {
		return json.NewEncoder(c.stdout).Encode(map[string]any{"ok": true, "report": rep})
	}
	out := c.stdout
	if rep.Anchor > 0 {
		fmt.Fprintf(out, "ok: %s (seq %d to %d), hash chain intact from the retained anchor at seq %d (the rows before it were pruned, as a signed prune record says)\n", plural.Count(rep.Rows, "row", "rows"), rep.Anchor, rep.LastSeq, rep.Anchor)
	} else {
		fmt.Fprintf(out, "ok: %s (seq 1 to %d), hash chain intact\n", plural.Count(rep.Rows, "row", "rows"), rep.LastSeq)
	}
	switch {
	case rep.Checkpoints == 0:
		fmt.Fprintln(out, "no signed checkpoints yet: a truncated or rewritten log cannot be told apart. A daemon with a signing_key signs one every checkpoints.every (1m) while rows are unsigned, every checkpoints.every_rows rows and at shutdown: run log verify again then")
	case rep.SignaturesChecked:
		fmt.Fprintf(out, "%s, every signature verified with key %s, each over the Merkle root of the rows before it; the last signs seq %d\n", plural.Count(rep.Checkpoints, "checkpoint", "checkpoints"), decisionlog.KeyID(opts.PublicKey), rep.LastSigned)
	default:
		fmt.Fprintf(out, "%s %s the chain, but their signatures were NOT checked: give --pubkey\n", plural.Count(rep.Checkpoints, "checkpoint", "checkpoints"), plural.Word(rep.Checkpoints, "matches", "match"))
	}
	if len(rep.Unguarded) > 0 {
		fmt.Fprintf(out, "WARNING: append-only triggers missing or altered: %s (someone lifted the guard; the daemon restores it at start)\n", strings.Join(rep.Unguarded, ", "))
	}
	if rep.Unsigned > 0 && rep.Checkpoints > 0 {
		fmt.Fprintf(out, "%s after the last checkpoint %s not yet signed\n", plural.Count(rep.Unsigned, "row", "rows"), plural.Word(rep.Unsigned, "is", "are"))
	}
	switch {
	case rep.TailState == "missing" && rep.LastSeq > 0:
		fmt.Fprintf(out, "WARNING: no tail state file %s beside the log: a tail cut off, signed checkpoints included, is not detected here (copy it with the db, or give --trusted-checkpoint)\n", opts.StatePath)
	case rep.TailState == "authenticated":
		fmt.Fprintf(out, "the writer's tail state file (authenticated with the signing key) records seq %d: the log reaches it with the same head%s\n", rep.TailStateSeq, pastTailState(rep))
	case rep.TailState == "unauthenticated":
		fmt.Fprintf(out, "the writer's tail state file records seq %d: the log reaches it with the same head (the state file was read but not authenticated: give --signing-key)%s\n", rep.TailStateSeq, pastTailState(rep))
	}
	switch {
	case witnessed != nil:
		fmt.Fprintf(out, "the checkpoint witness %s cosigned at %s (tree size %d) matches: nothing before it was removed or rewritten\n",
			witnessed.Witness, witnessed.CosignAt.UTC().Format(time.RFC3339), witnessed.Size)
	case rep.TrustedSeq > 0:
		fmt.Fprintf(out, "the trusted checkpoint at seq %d matches: nothing before it was removed or rewritten\n", rep.TrustedSeq)
	}
	return nil
}

// fetchWitnessed asks the collector for the newest checkpoint it cosigned
// for this log's origin and checks the cosignature with the witness key;
// the checkpoint then serves as the trusted one, which the log must hold.
func (c *logVerifyCmd) fetchWitnessed(ctx context.Context, r *decisionlog.Reader) (*fleet.Cosigned, *decisionlog.Checkpoint, error) {
	b, err := readFlagFile("log verify", "witness-key", c.witnessKey)
	if err != nil {
		return nil, nil, err
	}
	wpub, err := decisionlog.ParsePublicKey(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", c.witnessKey, err)
	}
	origin, err := r.Origin(ctx)
	if err != nil {
		return nil, nil, err
	}
	text, err := fleet.FetchWitnessed(ctx, http.DefaultClient, c.witness, origin)
	if err != nil {
		return nil, nil, err
	}
	w, err := fleet.VerifyCosigned(text, wpub)
	if err != nil {
		return nil, nil, fmt.Errorf("witness %s: %w", c.witness, err)
	}
	if w.Origin != origin {
		return nil, nil, fmt.Errorf("witness %s: the cosigned checkpoint is of origin %q, not this log's %q", c.witness, w.Origin, origin)
	}
	cp, err := decisionlog.ParseCheckpoint(text)
	if err != nil {
		return nil, nil, fmt.Errorf("witness %s: %w", c.witness, err)
	}
	return w, cp, nil
}

// isTerminal reports whether f is a terminal, for the progress line.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// pastTailState explains rows past the seq the tail state file records,
// which a running daemon's log always has: the writer writes the file
// before each commit, with the head that commit starts from, so "records
// seq 10" beside "11 rows" is the normal case, not a problem.
func pastTailState(rep *decisionlog.VerifyReport) string {
	if rep.LastSeq <= rep.TailStateSeq {
		return ""
	}
	rows := strconv.FormatInt(rep.LastSeq, 10)
	if rep.LastSeq > rep.TailStateSeq+1 {
		rows = strconv.FormatInt(rep.TailStateSeq+1, 10) + " to " + rows
	}
	return "; seq " + rows + " came after it: the writer writes the file before each commit, so a running daemon's last commit is past it"
}
