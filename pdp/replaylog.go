package pdp

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/agentpdp/agentpdp/pdp/policy"
	"github.com/agentpdp/agentpdp/pdp/wire"

	"github.com/agentpdp/agentpdp/decisionlog"
)

// ReplayDiff is one decision that replays differently.
type ReplayDiff struct {
	Seq             int64        `json:"seq"`
	DecisionID      string       `json:"decision_id"`
	Principal       string       `json:"principal"`
	Action          string       `json:"action"`
	Resource        string       `json:"resource"`
	Logged          wire.Verdict `json:"logged"`
	Replayed        wire.Verdict `json:"replayed"`
	LoggedReasons   []string     `json:"logged_reasons"`
	ReplayedReasons []string     `json:"replayed_reasons"`
	Note            string       `json:"note,omitempty"`
}

// ReplayReport is what replay found. Reproduce mode fills Reproduced and
// Differ; impact mode fills Flips, ByPolicy and Examples.
type ReplayReport struct {
	Mode             string                  `json:"mode"` // reproduce | impact
	CandidateVersion string                  `json:"candidate_version,omitempty"`
	Decisions        int                     `json:"decisions"`
	Reproduced       int                     `json:"reproduced,omitempty"`
	Differ           []ReplayDiff            `json:"differ,omitempty"`
	Unverifiable     map[string]int          `json:"unverifiable,omitempty"` // why → count
	Changed          int                     `json:"changed"`
	Flips            map[string]int          `json:"flips,omitempty"`     // "allow→deny" → count
	ByPolicy         map[string]int          `json:"by_policy,omitempty"` // the candidate's deciding policy → flips
	Examples         map[string][]ReplayDiff `json:"examples,omitempty"`  // per flip, a few
}

const (
	maxReplayDiffs    = 1000 // differences kept in full; the counts stay exact
	maxReplayExamples = 3
)

type replayJob struct {
	entry *decisionlog.Entry
	rec   *wire.DecisionRecord
	snap  *policy.Snapshot // nil in impact mode: the candidate is used
}

type replayResult struct {
	job     replayJob
	got     *wire.Decision
	skipWhy string
}

// ReplayLog re-evaluates the decisions of r that match f, in workers
// goroutines (at least 1). With candidate nil it reproduces each decision
// against the policy version that made it (rebuilt from the log's
// policy-load rows); otherwise it reports what candidate would change.
// progress, if not nil, is called every 1,000 decisions and at the end with
// the count so far. Memory is bounded by the number of policy versions, not
// the length of the log.
func ReplayLog(ctx context.Context, r *decisionlog.Reader, f decisionlog.Filter, candidate *policy.Snapshot, workers int, progress func(int)) (*ReplayReport, error) {
	rep := &ReplayReport{Mode: "reproduce", Unverifiable: map[string]int{}, Flips: map[string]int{}, ByPolicy: map[string]int{}, Examples: map[string][]ReplayDiff{}}
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
				} else if d, err := Replay(snap, j.rec, j.entry.Time); err != nil {
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

	snaps := map[string]*policy.Snapshot{}
	scanErr := r.ScanFilter(ctx, f, func(e *decisionlog.Entry) error {
		var rec wire.DecisionRecord
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
	}
	if scanErr != nil {
		return nil, scanErr
	}
	slices.SortFunc(rep.Differ, func(a, b ReplayDiff) int { return int(a.Seq - b.Seq) })
	return rep, nil
}

// loadVersion rebuilds a policy version from its load row, or nil.
func loadVersion(ctx context.Context, r *decisionlog.Reader, version string) *policy.Snapshot {
	entry, err := r.PolicyLoad(ctx, version)
	if err != nil {
		return nil
	}
	var rec PolicyLoadRecord
	if json.Unmarshal(entry.Body, &rec) != nil {
		return nil
	}
	snap, err := SnapshotFromLoad(&rec)
	if err != nil {
		return nil
	}
	return snap
}

func (rep *ReplayReport) add(res replayResult) {
	rep.Decisions++
	rec := res.job.rec
	if res.got == nil {
		rep.Unverifiable[res.skipWhy]++
		return
	}
	d := ReplayDiff{Seq: res.job.entry.Seq, DecisionID: rec.DecisionID, Principal: rec.Principal, Action: rec.Action, Resource: rec.Resource,
		Logged: rec.Decision, Replayed: res.got.Decision, LoggedReasons: replayReasonIDs(rec.Reasons), ReplayedReasons: replayReasonIDs(res.got.Reasons)}
	if rep.Mode == "impact" {
		if d.Logged == d.Replayed {
			return
		}
		rep.Changed++
		flip := string(d.Logged) + "→" + string(d.Replayed)
		rep.Flips[flip]++
		by := "(no policy: default deny)"
		if len(d.ReplayedReasons) > 0 {
			by = strings.Join(d.ReplayedReasons, ",")
		}
		rep.ByPolicy[by]++
		if len(rep.Examples[flip]) < maxReplayExamples {
			rep.Examples[flip] = append(rep.Examples[flip], d)
		}
		return
	}
	// Rows logged before no_permit was a reason have none for a default deny.
	if d.Logged == d.Replayed && slices.Equal(withoutNoPermit(d.LoggedReasons), withoutNoPermit(d.ReplayedReasons)) {
		rep.Reproduced++
		return
	}
	if len(rec.Masked) > 0 {
		// Masked inputs are not what the policies saw: no proof either way.
		rep.Unverifiable["its request was masked in the log"]++
		return
	}
	rep.Changed++
	if len(rep.Differ) < maxReplayDiffs {
		rep.Differ = append(rep.Differ, d)
	}
}

func replayReasonIDs(rs []wire.Reason) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.Policy)
	}
	return out
}

func withoutNoPermit(ids []string) []string {
	return slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == ReasonNoPermit })
}
