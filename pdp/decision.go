package pdp

import (
	"cmp"
	"slices"
	"strings"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
)

// The three answers.
const (
	Allow  = "allow"
	Deny   = "deny"
	StepUp = "step_up"
)

// Reasons given by the built-in guards, which run before Cedar.
const (
	ReasonCredentialExpired = "credential_expired"
	ReasonApprovalInvalid   = "approval_invalid"
)

// Decision is the answer to one request.
type Decision struct {
	DecisionID    string      `json:"decision_id,omitempty"`
	Decision      string      `json:"decision"` // allow, deny or step_up
	Reasons       []Reason    `json:"reasons"`
	Errors        []EvalError `json:"errors"`
	PolicyVersion string      `json:"policy_version"`
	Seq           int64       `json:"seq,omitempty"` // position in the log; durable once returned
}

// Reason is a policy (or built-in guard) that decided.
type Reason struct {
	Policy      string            `json:"policy"`
	Effect      string            `json:"effect"`
	File        string            `json:"file,omitempty"`
	Line        int               `json:"line,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Builtin     bool              `json:"builtin,omitempty"` // a guard, not a Cedar policy
	Detail      string            `json:"detail,omitempty"`
}

// EvalError is a policy whose evaluation failed for this request, for
// example by reading an attribute the entity does not have.
type EvalError struct {
	Policy  string `json:"policy"`
	Effect  string `json:"effect,omitempty"`
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
}

// OnError chooses what an erroring forbid does.
type OnError string

const (
	// OnErrorDeny denies when any forbid errors: a forbid that could not be
	// evaluated might have applied. The default.
	OnErrorDeny OnError = "deny"
	// OnErrorSkip is Cedar's own rule: an erroring policy is ignored.
	OnErrorSkip OnError = "skip"
)

// evaluation is the engine's answer before it is logged.
type evaluation struct {
	decision string
	reasons  []Reason
	errors   []EvalError
	approval *ApprovalUse
	logOnly  []Reason // @mode("log_only") policies that held: recorded only
}

// evaluate applies agentpdp's decision semantics to one prepared request.
//
// The forbids and permits are authorized separately so that each policy is
// evaluated exactly once and both sides' satisfied policies are known:
// cedar.Authorize reports only forbids once one holds, but a satisfied
// step-up forbid must still know whether any permit holds.
func (s *Snapshot) evaluate(req cedar.Request, ents types.EntityGetter, onError OnError, cedarSemantics bool) evaluation {
	if cedarSemantics {
		return s.evaluateCedar(req, ents)
	}
	_, fdiag := cedar.Authorize(s.forbids, ents, req)
	_, pdiag := cedar.Authorize(s.permits, ents, req)

	var ev evaluation
	var hardForbid, stepForbid, hardPermit, stepPermit, erroredForbid []*Policy
	for _, r := range fdiag.Reasons {
		p := s.byID[r.PolicyID]
		if p.StepUp {
			stepForbid = append(stepForbid, p)
		} else {
			hardForbid = append(hardForbid, p)
		}
	}
	for _, r := range pdiag.Reasons {
		p := s.byID[r.PolicyID]
		if p.StepUp {
			stepPermit = append(stepPermit, p)
		} else {
			hardPermit = append(hardPermit, p)
		}
	}
	for _, e := range fdiag.Errors {
		p := s.byID[e.PolicyID]
		erroredForbid = append(erroredForbid, p)
		ev.errors = append(ev.errors, evalError(p, e.Message))
	}
	for _, e := range pdiag.Errors {
		ev.errors = append(ev.errors, evalError(s.byID[e.PolicyID], e.Message))
	}
	sortErrors(ev.errors)

	ev.logOnly = s.evaluateLogOnly(req, ents, &ev)

	switch {
	case len(hardForbid) > 0:
		ev.decision, ev.reasons = Deny, reasons(hardForbid)
	case onError != OnErrorSkip && len(erroredForbid) > 0:
		ev.decision, ev.reasons = Deny, reasons(erroredForbid)
	case len(hardPermit) == 0 && len(stepPermit) == 0:
		ev.decision = Deny // nothing permits: Cedar's default deny
	case len(stepForbid) > 0:
		ev.decision, ev.reasons = StepUp, reasons(stepForbid)
	case len(hardPermit) == 0:
		ev.decision, ev.reasons = StepUp, reasons(stepPermit)
	default:
		ev.decision, ev.reasons = Allow, reasons(hardPermit)
	}
	return ev
}

// evaluateLogOnly evaluates the @mode("log_only") policies apart, so that
// they never touch the answer; their errors are recorded with the others.
func (s *Snapshot) evaluateLogOnly(req cedar.Request, ents types.EntityGetter, ev *evaluation) []Reason {
	if len(s.logOnlyForbids)+len(s.logOnlyPermits) == 0 {
		return nil
	}
	var held []*Policy
	for _, set := range []policySlice{s.logOnlyForbids, s.logOnlyPermits} {
		_, diag := cedar.Authorize(set, ents, req)
		for _, r := range diag.Reasons {
			held = append(held, s.byID[r.PolicyID])
		}
		for _, e := range diag.Errors {
			ev.errors = append(ev.errors, evalError(s.byID[e.PolicyID], e.Message))
		}
	}
	sortErrors(ev.errors)
	return reasons(held)
}

// evaluateCedar is plain Cedar: annotations mean nothing and erroring
// policies are skipped.
func (s *Snapshot) evaluateCedar(req cedar.Request, ents types.EntityGetter) evaluation {
	dec, diag := cedar.Authorize(s.all, ents, req)
	ev := evaluation{decision: Deny}
	if dec == cedar.Allow {
		ev.decision = Allow
	}
	ps := make([]*Policy, len(diag.Reasons))
	for i, r := range diag.Reasons {
		ps[i] = s.byID[r.PolicyID]
	}
	ev.reasons = reasons(ps)
	for _, e := range diag.Errors {
		ev.errors = append(ev.errors, evalError(s.byID[e.PolicyID], e.Message))
	}
	sortErrors(ev.errors)
	return ev
}

func reasons(ps []*Policy) []Reason {
	out := make([]Reason, len(ps))
	for i, p := range ps {
		out[i] = Reason{Policy: p.ID, Effect: p.Effect, File: p.File, Line: p.Line, Annotations: p.reasonAnnotations}
	}
	slices.SortFunc(out, func(a, b Reason) int { return strings.Compare(a.Policy, b.Policy) })
	return out
}

func evalError(p *Policy, msg string) EvalError {
	return EvalError{Policy: p.ID, Effect: p.Effect, File: p.File, Line: p.Line, Message: msg}
}

func sortErrors(es []EvalError) {
	slices.SortFunc(es, func(a, b EvalError) int {
		return cmp.Or(strings.Compare(a.Policy, b.Policy), strings.Compare(a.Message, b.Message))
	})
}
