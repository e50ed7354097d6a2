package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/internal/plural"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/policy"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// replayCmd is agentpdp replay: logged decisions evaluated again.
type replayCmd struct {
	streams
	db, policies       string
	ff                 filterFlags
	asJSON, failChange bool
	workers            int
}

func newReplayCmd() *cobra.Command {
	c := &replayCmd{}
	cmd := &cobra.Command{
		Use:   "replay --db FILE [--policies DIR] [filters]",
		Short: "Re-run logged decisions: against the policies that made them (proof), or a proposed change (impact)",
		Args:  noArgs,
		RunE:  runE(c, nil),
	}
	fl := cmd.Flags()
	dbFlag(fl, &c.db)
	fl.StringVar(&c.policies, "policies", "", "a proposed policy `directory`: report what it would change")
	c.ff.register(fl)
	fl.BoolVar(&c.asJSON, "json", false, "one JSON object")
	fl.BoolVar(&c.failChange, "fail-on-change", false, "with --policies: exit 1 if any decision would change")
	fl.IntVar(&c.workers, "workers", runtime.NumCPU(), "evaluations in parallel")
	return cmd
}

func (c *replayCmd) Run(ctx context.Context) error {
	f, err := c.ff.filter("replay", 1)
	if err != nil {
		return err
	}
	f.Kinds = []decisionlog.Kind{decisionlog.KindDecision}
	var candidate *policy.Snapshot
	if c.policies != "" {
		if err := needDir("replay", "policies", c.policies); err != nil {
			return err
		}
		if candidate, err = policy.LoadDir(c.policies, policy.LoadOptions{}); err != nil {
			return exitError{exitFail, err}
		}
	}
	r, err := openLog("replay", c.db)
	if err != nil {
		return err
	}
	defer r.Close()
	progress := progressTo(c.stderr, c.asJSON)
	rep, err := pdp.ReplayLog(ctx, r, f, candidate, max(c.workers, 1), progress)
	if progress != nil {
		fmt.Fprintln(c.stderr)
	}
	if err != nil {
		return err
	}
	if c.asJSON {
		if err := json.NewEncoder(c.stdout).Encode(rep); err != nil {
			return err
		}
	} else {
		printReplay(c.stdout, rep)
	}
	switch {
	case len(rep.Unverifiable) > 0:
		// A decision that cannot be replayed is one nobody can check: the
		// run did not show what it was asked to.
		return exitError{exitFail, errSilent}
	case rep.Mode == "reproduce" && len(rep.Differ) > 0:
		return exitError{exitFail, errSilent}
	case rep.Mode == "impact" && c.failChange && rep.Changed > 0:
		return exitError{exitFail, errSilent}
	}
	return nil
}

// progressTo prints a progress line on a terminal.
func progressTo(w io.Writer, quiet bool) func(done int) {
	f, ok := w.(*os.File)
	if quiet || !ok || !isTerminal(f) {
		return nil
	}
	return func(done int) { fmt.Fprintf(f, "\rreplayed %s", plural.Count(done, "decision", "decisions")) }
}

func reasonIDs(rs []wire.Reason) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.Policy)
	}
	return out
}

func printReplay(w io.Writer, rep *pdp.ReplayReport) {
	if rep.Mode == "reproduce" {
		fmt.Fprintf(w, "replayed %s against the policy versions that made them\n", plural.Count(rep.Decisions, "decision", "decisions"))
		fmt.Fprintf(w, "  %d reproduced exactly\n", rep.Reproduced)
		if rep.Changed > 0 {
			fmt.Fprintf(w, "  %d DID NOT REPRODUCE: the row or its policy load was altered, or an input was not deterministic\n", rep.Changed)
			for _, d := range rep.Differ {
				fmt.Fprintf(w, "    seq %d %s: logged %s [%s], replays as %s [%s]\n", d.Seq, d.DecisionID,
					d.Logged, strings.Join(d.LoggedReasons, ","), d.Replayed, strings.Join(d.ReplayedReasons, ","))
			}
		}
	} else {
		fmt.Fprintf(w, "impact of %s on %s: %d would change\n", rep.CandidateVersion, plural.Count(rep.Decisions, "logged decision", "logged decisions"), rep.Changed)
		for _, flip := range sortedKeys(rep.Flips) {
			fmt.Fprintf(w, "  %-18s %d\n", flip, rep.Flips[flip])
			for _, d := range rep.Examples[flip] {
				fmt.Fprintf(w, "      e.g. seq %d %s %s %s %s, now by [%s]\n", d.Seq, d.DecisionID, d.Principal, d.Action, d.Resource, strings.Join(d.ReplayedReasons, ","))
			}
		}
		if len(rep.ByPolicy) > 0 {
			fmt.Fprintln(w, "  by deciding policy in the proposal:")
			for _, p := range sortedKeys(rep.ByPolicy) {
				fmt.Fprintf(w, "    %-40s %d\n", p, rep.ByPolicy[p])
			}
		}
	}
	for _, why := range sortedKeys(rep.Unverifiable) {
		fmt.Fprintf(w, "  %d could not be replayed: %s\n", rep.Unverifiable[why], why)
	}
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
