package wire

import (
	"encoding/json"
	"hash/maphash"
	"sync/atomic"

	"github.com/cedar-policy/cedar-go/types"
)

// memo remembers what a pure function made of the inputs it read last, by
// their exact bytes: agents send the same entities, references and
// attributes with request after request. It holds at most memoSlots
// values, of inputs of at most memoMaxBytes (about a megabyte for
// records): a value replaces the one in its slot. The values are shared
// between callers and must be immutable, or copied out. It is safe for
// concurrent use; the zero value is not ready (newMemo).
type memo[T any] struct {
	seed  maphash.Seed
	slots [memoSlots]atomic.Pointer[memoEntry[T]]
}

const (
	memoSlots    = 1024 // values kept, one per slot, chosen by a hash of the bytes
	memoMaxBytes = 1024 // a longer input is read every time
)

type memoEntry[T any] struct {
	raw string // the input's bytes, as sent
	v   T
}

func newMemo[T any]() *memo[T] { return &memo[T]{seed: maphash.MakeSeed()} }

// get is the value remembered for raw.
func (m *memo[T]) get(raw []byte) (T, bool) {
	if len(raw) <= memoMaxBytes {
		if e := m.slot(raw).Load(); e != nil && e.raw == string(raw) {
			return e.v, true
		}
	}
	var zero T
	return zero, false
}

// put remembers v for raw.
func (m *memo[T]) put(raw []byte, v T) {
	if len(raw) <= memoMaxBytes {
		m.slot(raw).Store(&memoEntry[T]{raw: string(raw), v: v})
	}
}

func (m *memo[T]) slot(raw []byte) *atomic.Pointer[memoEntry[T]] {
	return &m.slots[maphash.Bytes(m.seed, raw)%memoSlots]
}

// RecordMemo remembers what NormalizeRecord made of the objects it read
// last, by their exact bytes. An agent sends the same inline entities (it,
// and the tool it calls) with request after request, and reading their
// attributes cost more than the rest of the decision's Cedar work: a
// record per object, each sorted, hashed and copied by types.NewRecord.
//
// A reading is the same function of the bytes and the check every time, so
// a memo is made for one check (NewRecordMemo) and serves only readings
// under it; a reading under another rule does not use it. Only readings
// that succeed are kept: a refusal is made again, with its own field. A
// record is immutable and may be shared; its canonical JSON is copied out
// to each caller, so nothing a caller does to it reaches another.
type RecordMemo struct {
	check func(string) error
	m     *memo[recordReading]
}

type recordReading struct {
	rec types.Record
	out json.RawMessage // never handed out, only copies
}

// NewRecordMemo makes an empty memo for readings under check.
func NewRecordMemo(check func(string) error) *RecordMemo {
	return &RecordMemo{check: check, m: newMemo[recordReading]()}
}

// Normalize is NormalizeRecord(raw, field, check) for the memo's check,
// remembered: the same record, the same canonical JSON (the caller's own
// copy), the same error.
func (m *RecordMemo) Normalize(raw json.RawMessage, field string) (types.Record, json.RawMessage, error) {
	if r, ok := m.m.get(raw); ok {
		return r.rec, append(json.RawMessage(nil), r.out...), nil
	}
	rec, out, err := NormalizeRecord(raw, field, m.check)
	if err == nil {
		m.m.put(raw, recordReading{rec: rec, out: append(json.RawMessage(nil), out...)})
	}
	return rec, out, err
}
