package pdp

import (
	"hash/maphash"
	"sync/atomic"

	"github.com/cedar-policy/cedar-go/types"

	"github.com/agentpdp/agentpdp/pdp/mask"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// inlineMemo remembers what inline entities were made into: an agent sends
// the same ones (its own, its tool's) with request after request. Their
// attributes and tags are remembered as read under mask.Token, the rule of
// prepare's first reading; the masked re-reading, providers' entities and
// Replay read without it.
type inlineMemo struct {
	attrs   *wire.RecordMemo
	parents parentSets
}

func newInlineMemo() *inlineMemo {
	m := &inlineMemo{attrs: wire.NewRecordMemo(mask.Token)}
	m.parents.seed = maphash.MakeSeed()
	return m
}

// parentSets remembers the parents set of entities with one parent, by
// that parent: an agent's team, a tool's catalog. A types.EntityUIDSet is
// immutable (cedar-go), so one serves every entity with that parent. It
// holds at most len(slots) sets: a set replaces the one in its slot.
type parentSets struct {
	seed  maphash.Seed
	slots [256]atomic.Pointer[parentSet]
}

type parentSet struct {
	parent types.EntityUID
	set    types.EntityUIDSet
}

// of is types.NewEntityUIDSet(uids...), remembered when there is one uid.
// c may be nil.
func (c *parentSets) of(uids []types.EntityUID) types.EntityUIDSet {
	if c == nil || len(uids) != 1 {
		return types.NewEntityUIDSet(uids...)
	}
	slot := &c.slots[maphash.Comparable(c.seed, uids[0])%uint64(len(c.slots))]
	if s := slot.Load(); s != nil && s.parent == uids[0] {
		return s.set
	}
	set := types.NewEntityUIDSet(uids...)
	slot.Store(&parentSet{parent: uids[0], set: set})
	return set
}
