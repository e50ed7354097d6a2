package wire

import (
	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// writeOptions are how records and answers are written: maps in sorted key
// order, so that a record's bytes (which the log hashes) depend only on its
// content, and an invalid UTF-8 byte (a peer's executable path, say)
// written as U+FFFD rather than failing the decision.
var writeOptions = jsonv2.JoinOptions(
	jsonv2.Deterministic(true),
	jsontext.AllowInvalidUTF8(true),
)

// Marshal writes v as records and answers are written.
func Marshal(v any) ([]byte, error) { return jsonv2.Marshal(v, writeOptions) }

// MarshalRecord writes a decision record, the body of a decision row:
// exactly the bytes of Marshal(r), by the fast encoder of encode.go, or by
// the library for the rare shapes the encoder leaves to it (see there).
func MarshalRecord(r *DecisionRecord) ([]byte, error) {
	if b, ok := encode(func(e *encoder, b []byte) ([]byte, bool) { return e.record(b, r) }); ok {
		return b, nil
	}
	return Marshal(r)
}

// MarshalDecision writes the answer to one request: the bytes of
// Marshal(d), as MarshalRecord.
func MarshalDecision(d *Decision) ([]byte, error) {
	if b, ok := encode(func(e *encoder, b []byte) ([]byte, bool) { return e.decision(b, d) }); ok {
		return b, nil
	}
	return Marshal(d)
}
