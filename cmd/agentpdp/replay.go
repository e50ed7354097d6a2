package main

import (
	"context"
	"encoding/json"

	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp"
)

// replayDiff is one decision that replays differently.
type replayDiff struct {
	Seq             int64    `json:"seq"`
	DecisionID      string   `json:"decision_id"`
	Principal       string   `json:"principal"`
	Action          string   `json:"action"`
	Resource        string   `json:"resource"`
	Logged          string   `json:"logged"`
	Replayed        string   `json:"replayed"`
	LoggedReasons   []string `json:"logged_reasons"`
	ReplayedReasons []string `json:"replayed_reasons"`
	Note            string   `json:"note,omitempty"`
}

// replayReport is what replay found. Reproduce mode fills Reproduced and
// Differ; impact mode fills Flips, ByPolicy and Examples.
type replayReport struct {
	Mode             string                  `json:"mode"` // reproduce | impact
	CandidateVersion string                  `json:"candidate_version,omitempty"`
	Decisions        int                     `json:"decisions"`
	Reproduced       int                     `json:"reproduced,omitempty"`
	Differ           []replayDiff            `json:"differ,omitempty"`
	Unverifiable     map[string]int          `json:"unverifiable,omitempty"` // why → count
	Changed          int                     `json:"changed"`
	Flips            map[string]int          `json:"flips,omitempty"`     // "allow→deny" → count
	ByPolicy         map[string]int          `json:"by_policy,omitempty"` // the candidate's deciding policy → flips
	Examples         map[string][]replayDiff `json:"examples,omitempty"`  // per flip, a few
}

const (
	maxDiffs    = 1000 // differences kept in full; the counts stay exact
	maxExamples = 3
)

func newReplayCmd() *cobra.Command {
	var (
		db, policies       string
		ff                 filterFlags
		asJSON, failChange bool
		workers            int
	)
	cmd := &cobra.Command{
		Use:   "replay --db FILE [--policies DIR] [filters]",
		Short: "Re-run logged decisions: against the policies that made them (proof), or a proposed change (impact)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := ff.filter("replay", 1)
			if err != nil {
				return err
			}
			f.Kinds = []decisionlog.Kind{decisionlog.KindDecision}
			var candidate *pdp.Snapshot
			if policies != "" {
				if candidate, err = pdp.LoadDir(policies, pdp.LoadOptions{}); err != nil {
					return exitError{exitFail, err}
				}
			}
			r, err := decisionlog.OpenReader(db)
			if err != nil {
				return err
			}
			defer r.Close()
			rep, err := replay(cmd.Context(), r, f, candidate, max(workers, 1), progressTo(cmd, asJSON))
			if err != nil {
				return err
			}
			if asJSON {
				if err := json.NewEncoder(cmd.OutOrStdout()).Encode(rep); err != nil {
					return err
				}
			} else {
				printReplay(cmd.OutOrStdout(), rep)
			}
			switch {
			case rep.Mode == "reproduce" && len(rep.Differ) > 0:
				return exitError{exitFail, errSilent}
			case rep.Mode == "impact" && failChange && rep.Changed > 0:
				return exitError{exitFail, errSilent}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	dbFlag(fl, &db)
	fl.StringVar(&policies, "policies", "", "a proposed policy `directory`: report what it would change")
	ff.register(fl)
	fl.BoolVar(&asJSON, "json", false, "one JSON object")
	fl.BoolVar(&failChange, "fail-on-change", false, "with --policies: exit 1 if any decision would change")
	fl.IntVar(&workers, "workers", runtime.NumCPU(), "evaluations in parallel")
	return cmd
}

// progressTo prints a progress line on a terminal.
func progressTo(cmd *cobra.Command, quiet bool) func(done int) {
	f, ok := cmd.ErrOrStderr().(*os.File)
	if quiet || !ok || !isTerminal(f) {
		return nil
	}
	return func(done int) { fmt.Fprintf(f, "\rreplayed %d decisions", done) }
}

type replayJob struct {
	entry *decisionlog.Entry
	rec   *pdp.DecisionRecord
	snap  *pdp.Snapshot // nil in impact mode: the candidate is used
}

type replayResult struct {
	job     replayJob
	got     *pdp.Decision
	skipWhy string
}

// replay streams the matching decisions through workers; memory is bounded
// by the number of policy versions, not the length of the log.
func replay(ctx context.Context, r *decisionlog.Reader, f decisionlog.Filter, candidate *pdp.Snapshot, workers int, progress func(int)) (*replayReport, error) {
	rep := &replayReport{Mode: "reproduce", Unverifiable: map[string]int{}, Flips: map[string]int{}, ByPolicy: map[string]int{}, Examples: map[string][]replayDiff{}}
	if candidate != nil {
		rep.Mode, rep.CandidateVersion = "impact", candidate.Version
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan replayJob, 256)
	results := make(chan replayResult, 256)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for j := range jobs {
				res := replayResult{job: j}
				snap := j.snap
				if candidate != nil {
					snap = candidate
				}
				if snap == nil {
					res.skipWhy = "its policy version is not in the log"
				} else if d, err := pdp.Replay(snap, j.rec, j.entry.Time); err != nil {
					res.skipWhy = err.Error()
				} else {
					res.got = d
				}
				select {
				case results <- res:
				case <-ctx.Done():
					return
				}
			}
		})
	}
	aggregated := make(chan struct{})
	go func() {
		defer close(aggregated)
		for res := range results {
			rep.add(res)
			if progress != nil && rep.Decisions%1000 == 0 {
				progress(rep.Decisions)
			}
		}
	}()

	snaps := map[string]*pdp.Snapshot{}
	scanErr := r.ScanFilter(ctx, f, func(e *decisionlog.Entry) error {
		var rec pdp.DecisionRecord
		if err := json.Unmarshal(e.Body, &rec); err != nil {
			return fmt.Errorf("seq %d: %w", e.Seq, err)
		}
		j := replayJob{entry: e, rec: &rec}
		if candidate == nil {
			snap, ok := snaps[rec.PolicyVersion]
			if !ok {
				snap = loadVersion(ctx, r, rec.PolicyVersion)
				snaps[rec.PolicyVersion] = snap
			}
			j.snap = snap
		}
		select {
		case jobs <- j:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	close(jobs)
	wg.Wait()
	close(results)
	<-aggregated
	if progress != nil {
		progress(rep.Decisions)
		fmt.Fprintln(os.Stderr)
	}
	if scanErr != nil {
		return nil, scanErr
	}
	slices.SortFunc(rep.Differ, func(a, b replayDiff) int { return int(a.Seq - b.Seq) })
	return rep, nil
}

// loadVersion rebuilds a policy version from its load row, or nil.
func loadVersion(ctx context.Context, r *decisionlog.Reader, version string) *pdp.Snapshot {
	entry, err := r.PolicyLoad(ctx, version)
	if err != nil {
		return nil
	}
	var rec pdp.PolicyLoadRecord
	if json.Unmarshal(entry.Body, &rec) != nil {
		return nil
	}
	snap, err := pdp.SnapshotFromLoad(&rec)
	if err != nil {
		return nil
	}
	return snap
}

func (rep *replayReport) add(res replayResult) {
	rep.Decisions++
	rec := res.job.rec
	if res.got == nil {
		rep.Unverifiable[res.skipWhy]++
		return
	}
	d := replayDiff{Seq: res.job.entry.Seq, DecisionID: rec.DecisionID, Principal: rec.Principal, Action: rec.Action, Resource: rec.Resource,
		Logged: rec.Decision, Replayed: res.got.Decision, LoggedReasons: reasonIDs(rec.Reasons), ReplayedReasons: reasonIDs(res.got.Reasons)}
	if rep.Mode == "impact" {
		if d.Logged == d.Replayed {
			return
		}
		rep.Changed++
		flip := d.Logged + "→" + d.Replayed
		rep.Flips[flip]++
		by := "(no policy: default deny)"
		if len(d.ReplayedReasons) > 0 {
			by = strings.Join(d.ReplayedReasons, ",")
		}
		rep.ByPolicy[by]++
		if len(rep.Examples[flip]) < maxExamples {
			rep.Examples[flip] = append(rep.Examples[flip], d)
		}
		return
	}
	if d.Logged == d.Replayed && slices.Equal(d.LoggedReasons, d.ReplayedReasons) {
		rep.Reproduced++
		return
	}
	if len(rec.Masked) > 0 {
		// Masked inputs are not what the policies saw: no proof either way.
		rep.Unverifiable["its request was masked in the log"]++
		return
	}
	rep.Changed++
	if len(rep.Differ) < maxDiffs {
		rep.Differ = append(rep.Differ, d)
	}
}

func reasonIDs(rs []pdp.Reason) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.Policy)
	}
	return out
}

func printReplay(w io.Writer, rep *replayReport) {
	if rep.Mode == "reproduce" {
		fmt.Fprintf(w, "replayed %d decisions against the policy versions that made them\n", rep.Decisions)
		fmt.Fprintf(w, "  %d reproduced exactly\n", rep.Reproduced)
		if rep.Changed > 0 {
			fmt.Fprintf(w, "  %d DID NOT REPRODUCE: the row or its policy load was altered, or an input was not deterministic\n", rep.Changed)
			for _, d := range rep.Differ {
				fmt.Fprintf(w, "    seq %d %s: logged %s [%s], replays as %s [%s]\n", d.Seq, d.DecisionID,
					d.Logged, strings.Join(d.LoggedReasons, ","), d.Replayed, strings.Join(d.ReplayedReasons, ","))
			}
		}
	} else {
		fmt.Fprintf(w, "impact of %s on %d logged decisions: %d would change\n", rep.CandidateVersion, rep.Decisions, rep.Changed)
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
