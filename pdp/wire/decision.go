package wire

// Verdict is what a decision answers: allow, deny or step_up.
type Verdict string

// The three answers.
const (
	Allow  Verdict = "allow"
	Deny   Verdict = "deny"
	StepUp Verdict = "step_up"
)

// Verdicts lists the three answers.
var Verdicts = []Verdict{Allow, Deny, StepUp}

// Valid reports whether v is one of the three answers.
func (v Verdict) Valid() bool { return v == Allow || v == Deny || v == StepUp }

// Decision is the answer to one request.
type Decision struct {
	DecisionID    string      `json:"decision_id,omitempty"`
	Decision      Verdict     `json:"decision"`
	Reasons       []Reason    `json:"reasons"`
	Errors        []EvalError `json:"errors"`
	PolicyVersion string      `json:"policy_version"`
	Seq           int64       `json:"seq,omitzero"` // position in the log; durable once returned
}

// Reason is a policy (or built-in guard) that decided.
type Reason struct {
	Policy      string            `json:"policy"`
	Effect      string            `json:"effect"`
	File        string            `json:"file,omitempty"`
	Line        int               `json:"line,omitzero"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Builtin     bool              `json:"builtin,omitzero"` // a guard, not a Cedar policy
	Detail      string            `json:"detail,omitempty"`
}

// EvalError is a policy whose evaluation failed for this request, for
// example by reading an attribute the entity does not have.
type EvalError struct {
	Policy  string `json:"policy"`
	Effect  string `json:"effect,omitempty"`
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitzero"`
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
