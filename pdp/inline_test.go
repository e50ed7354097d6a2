package pdp

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/cedar-policy/cedar-go/types"
)

// parentSets gives the set types.NewEntityUIDSet makes, whatever its slots
// hold: the same parent again, parents that take each other's slots, none,
// several.
func TestParentSets_SameAsNewEntityUIDSet(t *testing.T) {
	c := newInlineMemo()
	var nilSets *parentSets
	for round := range 2 {
		for i := range 4 * len(c.parents.slots) {
			uids := []types.EntityUID{types.NewEntityUID("Team", types.String(fmt.Sprintf("t%d", i%(len(c.parents.slots)+3))))}
			if i%17 == 0 {
				uids = append(uids, types.NewEntityUID("Org", "o"))
			}
			if i%29 == 0 {
				uids = nil
			}
			want := types.NewEntityUIDSet(uids...)
			for _, got := range []types.EntityUIDSet{c.parents.of(uids), nilSets.of(uids)} {
				if !got.Equal(want) || !reflect.DeepEqual(got, want) {
					t.Fatalf("round %d, %v: %v, want %v", round, uids, got, want)
				}
			}
		}
	}
}
