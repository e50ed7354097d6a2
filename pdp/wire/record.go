package wire

import (
	"encoding/json"
	"time"
)

// Peer is the caller as the kernel saw it (SO_PEERCRED), and its executable.
type Peer struct {
	PID int32  `json:"pid"`
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
	Exe string `json:"exe,omitempty"`
}

// DecisionRecord is the body of a decision log entry: everything needed to
// explain and replay the decision, and to say who asked.
type DecisionRecord struct {
	DecisionID     string       `json:"decision_id"`
	Decision       string       `json:"decision"`
	Principal      string       `json:"principal"` // Cedar form, for indexing
	Action         string       `json:"action"`
	Resource       string       `json:"resource"`
	Classification string       `json:"classification,omitempty"` // of the data touched
	Reasons        []Reason     `json:"reasons"`
	Errors         []EvalError  `json:"errors"`
	PolicyVersion  string       `json:"policy_version"`
	OnError        OnError      `json:"on_error"`
	Approval       *ApprovalUse `json:"approval,omitempty"` // the approval that allowed it
	// ContextDigest binds approvals to this exact context: an HMAC of the
	// normalised context, taken before masking.
	ContextDigest string   `json:"context_digest"`
	Request       *Request `json:"request"` // after normalisation, prompt handling and masking
	Masked        []string `json:"masked,omitempty"`
	// Provided are the entities entity providers added (they override the
	// request's), kept so that a replay sees what the policies saw.
	Provided []Entity `json:"provided_entities,omitempty"`
	// LogOnly are the @mode("log_only") policies that held: they did not
	// affect the decision.
	LogOnly []Reason `json:"log_only,omitempty"`
	// Shadow is what the shadow policies would have answered.
	Shadow    *ShadowResult `json:"shadow,omitempty"`
	Peer      *Peer         `json:"peer,omitempty"`
	EvalNanos int64         `json:"eval_ns"`
}

// ShadowResult is the shadow policies' answer to a live request.
type ShadowResult struct {
	Decision      string      `json:"decision"`
	Reasons       []Reason    `json:"reasons"`
	Errors        []EvalError `json:"errors,omitempty"`
	PolicyVersion string      `json:"policy_version"`
}

// Outcome statuses.
const (
	OutcomeSuccess = "success"
	OutcomeError   = "error"
	OutcomeSkipped = "skipped"
)

// OutcomeRequest is what the caller reports happened after a decision.
type OutcomeRequest struct {
	Status string          `json:"status"` // success, error or skipped
	Detail json.RawMessage `json:"detail,omitempty"`
}

// OutcomeRecord is the body of an outcome entry.
type OutcomeRecord struct {
	DecisionID string          `json:"decision_id"`
	Status     string          `json:"status"`
	Detail     json.RawMessage `json:"detail,omitempty"`
	Decision   string          `json:"decision"` // what the decision was
	// ActedAgainst is set when the caller reports having acted although the
	// decision was not allow: evidence of an agent ignoring its PDP.
	ActedAgainst bool   `json:"acted_against_decision,omitzero"`
	Principal    string `json:"principal"`
	Action       string `json:"action"`
	Resource     string `json:"resource"`
	// TraceID is the decision's request trace_id, so the outcome sits in
	// the same trace as its decision.
	TraceID string `json:"trace_id,omitempty"`
	Peer    *Peer  `json:"peer,omitempty"`
}

// ApprovalRequest is a human's answer to a step_up decision.
type ApprovalRequest struct {
	Approver string `json:"approver"`
	Approved bool   `json:"approved"`
	Comment  string `json:"comment,omitempty"`
}

// ApprovalRecord is the body of an approval entry. It is bound to the
// decision it answers: a later request may use it only for the same
// principal, action, resource and context.
type ApprovalRecord struct {
	DecisionID    string    `json:"decision_id"`
	Approver      string    `json:"approver"`
	Approved      bool      `json:"approved"`
	Comment       string    `json:"comment,omitempty"`
	ExpiresAt     time.Time `json:"expires_at"`
	SingleUse     bool      `json:"single_use"`
	Principal     string    `json:"principal"`
	Action        string    `json:"action"`
	Resource      string    `json:"resource"`
	ContextDigest string    `json:"context_digest"`
	TraceID       string    `json:"trace_id,omitempty"` // the decision's, as in OutcomeRecord
	Peer          *Peer     `json:"peer,omitempty"`
}

// ApprovalUse is what a decision records of the approval it used.
type ApprovalUse struct {
	ID       string `json:"id"`
	Approver string `json:"approver"`
}
