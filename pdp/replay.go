package pdp

import (
	"fmt"
	"slices"
	"time"

	"github.com/agentpdp/agentpdp/pdp/mask"
	"github.com/agentpdp/agentpdp/pdp/policy"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// SnapshotFromLoad rebuilds the snapshot a policy-load record describes, from
// the file texts it holds, and checks that they digest to its version: a
// record whose files were altered does not rebuild.
func SnapshotFromLoad(rec *PolicyLoadRecord) (*policy.Snapshot, error) {
	files := slices.Clone(rec.Files)
	// Validation made no difference to decisions; the load was validated
	// when it was served. The schema still types the entities.
	snap, err := policy.Compile(files, rec.Root, policy.LoadOptions{Validation: policy.ValidateOff})
	if err != nil {
		return nil, fmt.Errorf("policy version %s: %w", rec.PolicyVersion, err)
	}
	if snap.Version != rec.PolicyVersion {
		return nil, fmt.Errorf("policy version %s: its recorded files digest to %s: the policy-load record was altered", rec.PolicyVersion, snap.Version)
	}
	return snap, nil
}

// Replay re-evaluates a logged decision against snap as it was made: at its
// time (for credential expiry), under its on_error mode, and with the
// approval it records having used. A request whose approval was refused at
// the time is refused again: whether an approval was valid depends on what
// happened before, which the approval rows, not the request, record.
func Replay(snap *policy.Snapshot, rec *wire.DecisionRecord, at time.Time) (*wire.Decision, error) {
	if rec.Request == nil {
		return nil, fmt.Errorf("decision %s: no request recorded", rec.DecisionID)
	}
	e := &Engine{opts: Options{OnError: rec.OnError, Prompt: PromptDrop, Now: func() time.Time { return at }}}
	if e.opts.OnError == "" {
		e.opts.OnError = wire.OnErrorDeny
	}
	// The row is stored already: it is held to the raw-token rule it was
	// decided under, not to rules added since (a row from before them
	// replays as it was decided).
	p, err := e.prepareWith(rec.Request, mask.RawToken, nil, rec.Evidence != nil)
	if err != nil {
		return nil, fmt.Errorf("decision %s: %w", rec.DecisionID, err)
	}
	if err := p.addProvided(rec.Provided, "/provided_entities", mask.RawToken); err != nil {
		return nil, fmt.Errorf("decision %s: %w", rec.DecisionID, err)
	}
	for _, r := range rec.Reasons {
		if r.Builtin && r.Policy == ReasonProviderFailed {
			p.providerFailure = r.Detail // the provider's failure then is part of the input
		}
	}
	replayTrust(p, rec)
	var ev evaluation
	switch {
	case rec.Request.Approval != "" && rec.Approval == nil:
		ev = approvalInvalid("refused when decided")
	case rec.Approval != nil:
		ev = e.evaluate(snap, p, at, &wire.ApprovalRecord{DecisionID: rec.Approval.ID, Approver: rec.Approval.Approver})
	default:
		ev = e.evaluate(snap, p, at, nil)
	}
	return &wire.Decision{DecisionID: rec.DecisionID, Decision: ev.decision, Reasons: nonNil(ev.reasons), Errors: nonNil(ev.errors), PolicyVersion: snap.Version}, nil
}
