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
	// Cgroup is the caller's cgroup path (/proc/PID/cgroup): its container
	// or systemd unit.
	Cgroup string `json:"cgroup,omitempty"`
}

// Evidence says where each fact a decision used came from: "verified" (a
// token checked against a configured issuer), "attested" (the kernel),
// "trusted" (entity files, entity providers) or "claimed" (the request).
type Evidence struct {
	Principal       string `json:"principal"`                  // verified | attested (a callers rule bound it) | claimed
	PrincipalEntity string `json:"principal_entity,omitempty"` // trusted | claimed; empty when no source describes it
	ResourceEntity  string `json:"resource_entity,omitempty"`  // trusted | claimed; empty when no source describes it
	Credential      string `json:"credential,omitempty"`       // verified | claimed
	OnBehalfOf      string `json:"on_behalf_of,omitempty"`     // verified (a delegated token's sub) | claimed
	Context         string `json:"context"`                    // claimed
	Caller          string `json:"caller,omitempty"`           // attested, when the kernel reported the caller
	// Entities are the request's and the providers' entities, by Cedar uid.
	Entities map[string]string `json:"entities,omitempty"`
	Identity *IdentityFacts    `json:"identity,omitempty"` // when the request carried a token
}

// IdentityFacts are what a request's token established, or why it did
// not. The token itself is never recorded: its SHA-256 thumbprint is, so
// that an auditor holding a token can find what it did. Policies see the
// verified facts as context.identity.
type IdentityFacts struct {
	Verified    bool     `json:"verified"`
	Principal   string   `json:"principal,omitempty"` // the entity the mapping rule gave
	Issuer      string   `json:"issuer,omitempty"`
	IssuerName  string   `json:"issuer_name,omitempty"`
	Subject     string   `json:"subject,omitempty"`
	SPIFFEID    string   `json:"spiffe_id,omitempty"`
	Scopes      []string `json:"scopes,omitempty"`
	Actors      []string `json:"actors,omitempty"` // RFC 8693 act chain, current actor first
	TokenSHA256 string   `json:"token_sha256,omitempty"`
	Error       string   `json:"error,omitempty"` // why the token was refused
}

// DecisionRecord is the body of a decision log entry: everything needed to
// explain and replay the decision, and to say who asked.
type DecisionRecord struct {
	DecisionID     string       `json:"decision_id"`
	Decision       Verdict      `json:"decision"`
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
	Shadow *ShadowResult `json:"shadow,omitempty"`
	Peer   *Peer         `json:"peer,omitempty"`
	// Evidence records the source of each fact the decision used.
	Evidence *Evidence `json:"evidence,omitempty"`
	// SharedIdentity flags a principal another executable or uid used
	// within the window: a shared service account.
	SharedIdentity bool  `json:"shared_identity,omitempty"`
	EvalNanos      int64 `json:"eval_ns"`
}

// ShadowResult is the shadow policies' answer to a live request.
type ShadowResult struct {
	Decision      Verdict     `json:"decision"`
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
	Decision   Verdict         `json:"decision"` // what the decision was
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
