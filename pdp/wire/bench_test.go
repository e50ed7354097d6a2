package wire_test

import (
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/pdp/wire"
)

// benchMixRequest is one request of agentpdp bench's built-in mix
// (cmd/agentpdp/bench.go, agentToolCalls): the agent and the tool inline,
// each with an __entity escape among its attributes.
const benchMixRequest = `{"principal":{"type":"Agent","id":"agent-7"},"action":{"type":"Action","id":"invoke_tool"},"resource":{"type":"Tool","id":"tool-12"},
			"context":{"args":{"query":"select * from t where id = 42","limit":52}},"entities":[{"uid":{"type":"Agent","id":"agent-7"},"parents":[{"type":"Team","id":"platform"}],"attrs":{"owner":{"__entity":{"type":"User","id":"owner-0@example.com"}},"trust":"high"}},{"uid":{"type":"Tool","id":"tool-12"},"parents":[],"attrs":{"classification":"public","environment":"dev","writes":true,"owner_team":{"__entity":{"type":"Team","id":"finance"}},"shared":false}}],"session_id":"s-7","trace_id":"000000000000000000c0ffee0ddba11d"}`

// benchShortRequest is pdp's benchRequest: references in Cedar's string
// form, no escapes.
const benchShortRequest = `{"principal":"Agent::\"bot\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"sql.query\"",
 "context":{"args":{"query":"select 1","limit":10}},
 "entities":[{"uid":"Agent::\"bot\"","attrs":{"trust":"standard","owner":"alice"},"parents":["Team::\"team-0\""]},
             {"uid":"Tool::\"sql.query\"","attrs":{"classification":"confidential","environment":"production","writes":false}}],
 "session_id":"s-1","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}`

func BenchmarkDecodeRequest(b *testing.B) {
	for _, bb := range []struct{ name, body string }{{"mix", benchMixRequest}, {"short", benchShortRequest}} {
		b.Run(bb.name, func(b *testing.B) {
			body := []byte(bb.body)
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				if _, err := wire.DecodeRequest(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkNormalizeRecord(b *testing.B) {
	for _, bb := range []struct{ name, rec string }{
		{"context", `{"args":{"query":"select * from t where id = 42","limit":52}}`},
		{"agent", `{"owner":{"__entity":{"type":"User","id":"owner-0@example.com"}},"trust":"high"}`},
		{"tool", `{"classification":"public","environment":"dev","writes":true,"owner_team":{"__entity":{"type":"Team","id":"finance"}},"shared":false}`},
		{"mixed", `{"a":[1,2.5,"x",null,{"__extn":{"fn":"ip","arg":"10.0.0.1"}}],"b":{"__entity":"x","c":1},"d":{"e":{"f":true}}}`},
	} {
		b.Run(bb.name, func(b *testing.B) {
			raw := json.RawMessage(bb.rec)
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				if _, _, err := wire.NormalizeRecord(raw, "/context", noToken); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// reportCPU reports the process's CPU time per operation (user and system,
// the garbage collector included) from now until the returned func is
// called. On a shared machine it is steadier than ns/op, which counts time
// spent waiting for a core.
func reportCPU(b *testing.B) func() {
	start := processCPU()
	return func() {
		b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op")
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRecordMemo reads the bench mix's tool attributes through a
// RecordMemo: hit, the same bytes each time (an agent's own entities);
// miss, different bytes each time (the memo's cost over NormalizeRecord
// when nothing repeats).
func BenchmarkRecordMemo(b *testing.B) {
	const tool = `{"classification":"public","environment":"dev","writes":true,"owner_team":{"__entity":{"type":"Team","id":"finance"}},"shared":false,"n":%d}`
	b.Run("hit", func(b *testing.B) {
		m := wire.NewRecordMemo(noToken)
		raw := fmt.Appendf(nil, tool, 1)
		b.ReportAllocs()
		defer reportCPU(b)()
		for b.Loop() {
			if _, _, err := m.Normalize(raw, "/entities/1/attrs"); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, memo := range []bool{true, false} {
		name := "miss"
		if !memo {
			name = "miss-without-memo"
		}
		b.Run(name, func(b *testing.B) {
			m := wire.NewRecordMemo(noToken)
			raws := make([][]byte, 1<<16)
			for i := range raws {
				raws[i] = fmt.Appendf(nil, tool, i)
			}
			b.ReportAllocs()
			defer reportCPU(b)()
			i := 0
			for b.Loop() {
				raw := raws[i%len(raws)]
				var err error
				if memo {
					_, _, err = m.Normalize(raw, "/entities/1/attrs")
				} else {
					_, _, err = wire.NormalizeRecord(raw, "/entities/1/attrs", noToken)
				}
				if err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
