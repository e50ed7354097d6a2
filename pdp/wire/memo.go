package wire

import (
	"encoding/json"
	"hash/maphash"
	"sync/atomic"

	"github.com/cedar-policy/cedar-go/types"
)

// RecordMemo remembers what NormalizeRecord made of the objects it read
// last, by their exact bytes. An agent sends the same inline entities (it,
// and the tool it calls) with request after request, and reading one costs
// more than the rest of its decision's Cedar work: a record per object,
// each sorted, hashed and copied by types.NewRecord.
//
// A reading is the same function of the bytes and the check every time, so
// a memo is made for one check (NewRecordMemo) and serves only readings
// under it; a reading under another rule does not use it. Only readings
// that succeed are kept: a refusal is made again, with its own field. A
// record is immutable and may be shared; its canonical JSON is copied out
// to each caller, so nothing a caller does to it reaches another.
//
// The memo holds at most memoSlots readings of memoMaxBytes each (about a
// megabyte): a reading replaces the one in its slot. It is safe for
// concurrent use.
type RecordMemo struct {
	check func(string) error
	seed  maphash.Seed
	slots [memoSlots]atomic.Pointer[memoEntry]
}

const (
	memoSlots    = 1024 // readings kept, one per slot, chosen by a hash of the bytes
	memoMaxBytes = 1024 // a longer object is read every time
)

type memoEntry struct {
	raw string          // the object's bytes, as sent
	rec types.Record    // what NormalizeRecord made of them
	out json.RawMessage // and its canonical JSON: never handed out, only copies
}

// NewRecordMemo makes an empty memo for readings under check.
func NewRecordMemo(check func(string) error) *RecordMemo {
	return &RecordMemo{check: check, seed: maphash.MakeSeed()}
}

// Normalize is NormalizeRecord(raw, field, check) for the memo's check,
// remembered: the same record, the same canonical JSON (the caller's own
// copy), the same error.
func (m *RecordMemo) Normalize(raw json.RawMessage, field string) (types.Record, json.RawMessage, error) {
	if len(raw) > memoMaxBytes {
		return NormalizeRecord(raw, field, m.check)
	}
	slot := &m.slots[maphash.Bytes(m.seed, raw)%memoSlots]
	if e := slot.Load(); e != nil && e.raw == string(raw) {
		return e.rec, append(json.RawMessage(nil), e.out...), nil
	}
	rec, out, err := NormalizeRecord(raw, field, m.check)
	if err == nil {
		slot.Store(&memoEntry{raw: string(raw), rec: rec, out: append(json.RawMessage(nil), out...)})
	}
	return rec, out, err
}
