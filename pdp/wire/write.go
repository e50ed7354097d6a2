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

// MarshalRecord writes a decision record, the body of a decision row.
func MarshalRecord(r *DecisionRecord) ([]byte, error) { return Marshal(r) }

// MarshalDecision writes the answer to one request.
func MarshalDecision(d *Decision) ([]byte, error) { return Marshal(d) }
