package wire

// Reasons of decisions refused before Cedar is asked (see Engine.Refuse in
// package pdp).
const (
	// ReasonRequestTooLarge: the request (or the message it came from) is
	// over a size limit, so it was not read whole and cannot be decided.
	ReasonRequestTooLarge = "request_too_large"
	// ReasonRequestRefused: the caller refused the request itself, because
	// it could not carry out exactly what would be decided (the MCP proxy's
	// refusals of messages it will not relay).
	ReasonRequestRefused = "request_refused"
)

// IsRefusal reports whether reason is one a caller may record as its own
// refusal of a request.
func IsRefusal(reason string) bool {
	return reason == ReasonRequestTooLarge || reason == ReasonRequestRefused
}

// The headers of POST /v1/authorize with which a caller records its own
// refusal of the request in the body: a decision deny with that reason,
// made without Cedar.
const (
	HeaderRefuse       = "Agentpdp-Refuse"        // the reason: request_too_large or request_refused
	HeaderRefuseDetail = "Agentpdp-Refuse-Detail" // why, in words
)
