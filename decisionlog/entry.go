package decisionlog

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Kind is the type of a log entry.
type Kind string

// The kinds of entries, every one the log holds, declared here only. Kinds
// are part of the hashed bytes of a row, so they are never renamed.
const (
	KindDecision   Kind = "decision"    // a decision: wire.DecisionRecord
	KindOutcome    Kind = "outcome"     // what the caller reports happened: wire.OutcomeRecord
	KindApproval   Kind = "approval"    // a human's answer to a step_up: wire.ApprovalRecord
	KindPolicyLoad Kind = "policy_load" // the full text of a policy set, before it serves
	KindCheckpoint Kind = "checkpoint"  // signs the head of the log
	// KindCosignature rows hold a witness's cosignature of a checkpoint,
	// fetched by the http sink (witness: true). They are evidence from off
	// the host, so a cosignature row alone does not make a checkpoint due:
	// an idle log would otherwise sign, be cosigned, and store a row
	// forever.
	KindCosignature Kind = "cosignature"
	// KindPrune rows are the signed evidence a prune leaves: written, and
	// committed, before the rows they describe are deleted.
	KindPrune Kind = "prune"
	// KindIntegrity rows record what the writer found and did about the
	// log's integrity at start: append-only triggers restored, a tail it
	// did not write accepted by the operator.
	KindIntegrity Kind = "integrity"
)

// Kinds lists every kind, in the order above.
var Kinds = []Kind{KindDecision, KindOutcome, KindApproval, KindPolicyLoad, KindCheckpoint, KindCosignature, KindPrune, KindIntegrity}

// Entry is one row of the log.
type Entry struct {
	Seq  int64     // assigned by Append: 1, 2, 3, …
	Kind Kind      // what Body holds
	Time time.Time // when the event happened, stored in Unix nanoseconds
	Body json.RawMessage
	Hash []byte // assigned by Append

	// Keys, if set, are the body's values for the log table's columns and
	// the provenance index (see Keys): the writer stores the columns as
	// given and hands the index keys to the indexer. The Reader does not
	// read them back.
	Keys *Keys
}

// CanonicalBytes are the bytes a row's hash covers: the seq and time as
// 8-byte big-endian integers, the kind, a NUL, then the body exactly as
// stored. Verifiers recompute the chain from these.
func (e *Entry) CanonicalBytes() []byte {
	b := make([]byte, 0, 8+8+len(e.Kind)+1+len(e.Body))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Seq))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.UnixNano()))
	b = append(b, e.Kind...)
	b = append(b, 0)
	return append(b, e.Body...)
}

// ChainHash is SHA-256(prev || canonical bytes of e), written to the hash
// piece by piece rather than by copying the row into one buffer.
func ChainHash(prev []byte, e *Entry) []byte {
	h := sha256.New()
	h.Write(prev)
	var head [16]byte
	binary.BigEndian.PutUint64(head[:8], uint64(e.Seq))
	binary.BigEndian.PutUint64(head[8:], uint64(e.Time.UnixNano()))
	h.Write(head[:])
	h.Write([]byte(e.Kind))
	h.Write([]byte{0})
	h.Write(e.Body)
	return h.Sum(nil)
}

// MarshalJSON writes the entry as one flat object: seq, kind, time and hash
// followed by the body's own fields, the shape exports and sinks ship.
func (e *Entry) MarshalJSON() ([]byte, error) {
	head, err := json.Marshal(struct {
		Seq  int64     `json:"seq"`
		Kind Kind      `json:"kind"`
		Time time.Time `json:"time"`
		Hash string    `json:"hash"`
	}{e.Seq, e.Kind, e.Time.UTC(), hex.EncodeToString(e.Hash)})
	if err != nil {
		return nil, err
	}
	body := bytes.TrimSpace(e.Body)
	// A body altered in the file must not become a broken or ambiguous line
	// upstream: it must be an object whose keys are not the envelope's, in
	// any case (some decoders match keys case-insensitively).
	var top map[string]json.RawMessage
	if len(body) < 2 || body[0] != '{' || json.Unmarshal(body, &top) != nil {
		return nil, fmt.Errorf("entry %d: body is not a JSON object", e.Seq)
	}
	for k := range top {
		for _, reserved := range [...]string{"origin", "seq", "kind", "time", "hash"} {
			if strings.EqualFold(k, reserved) {
				return nil, fmt.Errorf("entry %d: body has the key %q, which the row's envelope uses", e.Seq, k)
			}
		}
	}
	if inner := bytes.TrimSpace(body[1 : len(body)-1]); len(inner) == 0 {
		return head, nil
	}
	out := make([]byte, 0, len(head)+len(body))
	out = append(out, head[:len(head)-1]...)
	out = append(out, ',')
	return append(out, body[1:]...), nil
}
