package pdp_test

import (
	"context"
	"testing"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// discard is a Recorder that keeps nothing: the benchmark below measures
// the engine and its codec, not SQLite.
type discard struct{}

func (discard) Append(_ context.Context, es ...*decisionlog.Entry) error {
	for i, e := range es {
		e.Seq = int64(i + 1)
	}
	return nil
}

// BenchmarkDecodeAndDecide is one decision's work in the engine and its
// codec, without the log: read the body, prepare and evaluate, write the
// record. It is what the codec adds to each decision's CPU.
//
// short is benchRequest (references in Cedar's string form); mix is a
// request of agentpdp bench's built-in mix (object references, an
// __entity escape in each inline entity's attributes). Inline entities are
// trusted (request_entities: trusted), as in examples/bench.yaml.
func BenchmarkDecodeAndDecide(b *testing.B) {
	e := newEngineB(b, benchPolicies(10), "")
	e2, err := pdp.NewEngine(pdp.Options{Recorder: discard{}, Key: []byte("0123456789abcdef0123456789abcdef"),
		Trust: pdp.TrustOptions{RequestEntities: pdp.RequestEntitiesTrusted}})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := e2.Use(b.Context(), e.Snapshot(), "bench"); err != nil {
		b.Fatal(err)
	}
	for _, bb := range []struct{ name, body string }{{"short", benchRequest}, {"mix", benchMixRequest}} {
		b.Run(bb.name, func(b *testing.B) {
			body := []byte(bb.body)
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				req, err := wire.DecodeRequest(body)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := e2.Decide(b.Context(), req, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecideDaemon is one decision's work in the engine as the daemon
// does it under agentpdp bench, without the log: the bench mix decided by
// the default policies (which read context.identity, so the engine builds
// it) for a kernel-attested caller (so the shared-identity tracker runs).
func BenchmarkDecideDaemon(b *testing.B) {
	e, rec, _ := benchEngine(b)
	peer := benchPeer
	bodies := benchMix(64)
	b.ReportAllocs()
	defer reportCPU(b)()
	i := 0
	for b.Loop() {
		req, err := wire.DecodeRequest(bodies[i%len(bodies)])
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.Decide(b.Context(), req, peer); err != nil {
			b.Fatal(err)
		}
		rec.bodies = rec.bodies[:0]
		i++
	}
}
