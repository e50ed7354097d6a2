package pdp

import (
	"cmp"
	"slices"
	"strings"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"

	"github.com/agentpdp/agentpdp/pdp/policy"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// Reasons given by the built-in guards, which run before Cedar.
const (
	ReasonCredentialExpired = "credential_expired"
	ReasonApprovalInvalid   = "approval_invalid"
	// ReasonNoPermit is a deny because no policy permits the request.
	ReasonNoPermit = "no_permit"
)

// evaluation is the engine's answer before it is logged.
type evaluation struct {
	decision wire.Verdict
	reasons  []wire.Reason
	errors   []wire.EvalError
	approval *wire.ApprovalUse
	logOnly  []wire.Reason // @mode("log_only") policies that held: recorded only
}

// evaluate applies agentpdp's decision semantics to one prepared request.
//
// The forbids and permits are authorized separately so that each policy is
// evaluated exactly once and both sides' satisfied policies are known:
// cedar.Authorize reports only forbids once one holds, but a satisfied
// step-up forbid must still know whether any permit holds.
func evaluate(s *policy.Snapshot, req cedar.Request, ents types.EntityGetter, onError wire.OnError, cedarSemantics bool) evaluation {
	if cedarSemantics {
		return evaluateCedar(s, req, ents)
	}
	_, fdiag := cedar.Authorize(s.Forbids(), ents, req)
	_, pdiag := cedar.Authorize(s.Permits(), ents, req)

	var ev evaluation
	var hardForbid, stepForbid, hardPermit, stepPermit, erroredForbid []*policy.Policy
	for _, r := range fdiag.Reasons {
		p := s.ByID(r.PolicyID)
		if p.StepUp {
			stepForbid = append(stepForbid, p)
		} else {
			hardForbid = append(hardForbid, p)
		}
	}
	for _, r := range pdiag.Reasons {
		p := s.ByID(r.PolicyID)
		if p.StepUp {
			stepPermit = append(stepPermit, p)
		} else {
			hardPermit = append(hardPermit, p)
		}
	}
	for _, e := range fdiag.Errors {
		p := s.ByID(e.PolicyID)
		erroredForbid = append(erroredForbid, p)
		ev.errors = append(ev.errors, evalError(p, e.Message))
	}
	for _, e := range pdiag.Errors {
		ev.errors = append(ev.errors, evalError(s.ByID(e.PolicyID), e.Message))
	}
	sortErrors(ev.errors)

	ev.logOnly = evaluateLogOnly(s, req, ents, &ev)

	switch {
	case len(hardForbid) > 0:
		ev.decision, ev.reasons = wire.Deny, reasons(hardForbid)
	case onError != wire.OnErrorSkip && len(erroredForbid) > 0:
		ev.decision, ev.reasons = wire.Deny, reasons(erroredForbid)
	case len(hardPermit) == 0 && len(stepPermit) == 0:
		// Nothing permits: Cedar's default deny, said as a reason so that a
		// deny is never without one.
		ev.decision, ev.reasons = wire.Deny, []wire.Reason{noPermit(s, req)}
	case len(stepForbid) > 0:
		ev.decision, ev.reasons = wire.StepUp, reasons(stepForbid)
	case len(hardPermit) == 0:
		ev.decision, ev.reasons = wire.StepUp, reasons(stepPermit)
	default:
		ev.decision, ev.reasons = wire.Allow, reasons(hardPermit)
	}
	return ev
}

// noPermit is the reason of a default deny, with a hint when the schema
// does not declare the request's action or entity types (a misspelt action
// is the usual cause).
func noPermit(s *policy.Snapshot, req cedar.Request) wire.Reason {
	detail := "no policy permits this request (default deny)"
	if gaps := s.SchemaGaps(req.Principal, req.Action, req.Resource); gaps != "" {
		detail += "; " + gaps
	}
	return wire.Reason{Policy: ReasonNoPermit, Effect: "forbid", Builtin: true, Detail: detail}
}

// evaluateLogOnly evaluates the @mode("log_only") policies apart, so that
// they never touch the answer; their errors are recorded with the others.
func evaluateLogOnly(s *policy.Snapshot, req cedar.Request, ents types.EntityGetter, ev *evaluation) []wire.Reason {
	if len(s.LogOnlyForbids())+len(s.LogOnlyPermits()) == 0 {
		return nil
	}
	var held []*policy.Policy
	for _, set := range []policy.Set{s.LogOnlyForbids(), s.LogOnlyPermits()} {
		_, diag := cedar.Authorize(set, ents, req)
		for _, r := range diag.Reasons {
			held = append(held, s.ByID(r.PolicyID))
		}
		for _, e := range diag.Errors {
			ev.errors = append(ev.errors, evalError(s.ByID(e.PolicyID), e.Message))
		}
	}
	sortErrors(ev.errors)
	return reasons(held)
}

// evaluateCedar is plain Cedar: annotations mean nothing and erroring
// policies are skipped.
func evaluateCedar(s *policy.Snapshot, req cedar.Request, ents types.EntityGetter) evaluation {
	dec, diag := cedar.Authorize(s.All(), ents, req)
	ev := evaluation{decision: wire.Deny}
	if dec == cedar.Allow {
		ev.decision = wire.Allow
	}
	ps := make([]*policy.Policy, len(diag.Reasons))
	for i, r := range diag.Reasons {
		ps[i] = s.ByID(r.PolicyID)
	}
	ev.reasons = reasons(ps)
	for _, e := range diag.Errors {
		ev.errors = append(ev.errors, evalError(s.ByID(e.PolicyID), e.Message))
	}
	sortErrors(ev.errors)
	return ev
}

func reasons(ps []*policy.Policy) []wire.Reason {
	out := make([]wire.Reason, len(ps))
	for i, p := range ps {
		out[i] = wire.Reason{Policy: p.ID, Effect: p.Effect, File: p.File, Line: p.Line, Annotations: p.ReasonAnnotations()}
	}
	slices.SortFunc(out, func(a, b wire.Reason) int { return strings.Compare(a.Policy, b.Policy) })
	return out
}

func evalError(p *policy.Policy, msg string) wire.EvalError {
	return wire.EvalError{Policy: p.ID, Effect: p.Effect, File: p.File, Line: p.Line, Message: msg}
}

func sortErrors(es []wire.EvalError) {
	slices.SortFunc(es, func(a, b wire.EvalError) int {
		return cmp.Or(strings.Compare(a.Policy, b.Policy), strings.Compare(a.Message, b.Message))
	})
}
