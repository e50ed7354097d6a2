package pdp

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/cedar-policy/cedar-go/types"

	"github.com/agentpdp/agentpdp/pdp/wire"
)

// The context's record is made once, after admit adds the daemon's keys,
// when prepare is told they will come; told wrong, either way, it is the
// same record: the hint saves work, it never changes what Cedar sees.
func TestPreparedContext_HintNeverChangesTheRecord(t *testing.T) {
	e, err := NewEngine(Options{})
	if err != nil {
		t.Fatal(err)
	}
	peer := &wire.Peer{PID: 7, UID: 1000, GID: 1000, Exe: "/usr/bin/agent", Cgroup: "/a.scope"}
	for _, ctx := range []string{``, `null`, `{}`, `{"args":{"q":"x","n":1.5},"l":[1,null,"s"]}`} {
		req := &wire.Request{Principal: wire.EntityRef{Type: "Agent", ID: "a"}, Action: wire.EntityRef{Type: "Action", ID: "x"},
			Resource: wire.EntityRef{Type: "Tool", ID: "t"}, Context: json.RawMessage(ctx)}
		plain, _, err := wire.NormalizeRecord(req.Context, "/context", func(string) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		m := plain.Map()
		if m == nil {
			m = types.RecordMap{}
		}
		m["identity"], m["caller"] = unverified, (*callerCache)(nil).record(peer)
		want := types.NewRecord(m)
		for _, hint := range []bool{true, false} {
			for _, early := range []bool{true, false} {
				p, err := e.prepareWith(req, func(string) error { return nil }, nil, hint)
				if err != nil {
					t.Fatal(err)
				}
				if !hint || early {
					// Without the daemon's keys, the request's own.
					if got := p.context(); !got.Equal(plain) {
						t.Fatalf("%q hint %v: context before admit %v, want %v", ctx, hint, got, plain)
					}
				}
				addEvidence(p, nil, peer, nil)
				got := p.request().Context
				if !got.Equal(want) || !reflect.DeepEqual(got.Map(), want.Map()) {
					t.Fatalf("%q hint %v early %v: context %v, want %v", ctx, hint, early, got, want)
				}
				if again := p.context(); !again.Equal(want) {
					t.Fatalf("%q: a second reading gave %v", ctx, again)
				}
			}
		}
	}
}
