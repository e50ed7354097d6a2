package pdp_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// benchPolicies generates n policies in the default pack's style: per-team
// permits, classification and environment forbids, some of them step-up.
func benchPolicies(n int) string {
	var b strings.Builder
	for i := range n {
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "permit (principal in Team::\"team-%d\", action == Action::\"invoke_tool\", resource) when { resource.classification != \"restricted\" };\n", i)
		case 1:
			fmt.Fprintf(&b, "@step_up(\"prod write\")\nforbid (principal, action == Action::\"invoke_tool\", resource) when { resource.environment == \"env-%d\" && resource.writes };\n", i)
		case 2:
			fmt.Fprintf(&b, "forbid (principal, action, resource) when { principal.trust == \"untrusted-%d\" };\n", i)
		case 3:
			fmt.Fprintf(&b, "@step_up(\"low trust\")\npermit (principal, action == Action::\"invoke_tool\", resource) when { principal.trust == \"low-%d\" };\n", i)
		}
	}
	return b.String()
}

// benchRequest is an agent tool call with the agent and tool inline, as
// agent frameworks send them.
const benchRequest = `{"principal":"Agent::\"bot\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"sql.query\"",
 "context":{"args":{"query":"select 1","limit":10}},
 "entities":[{"uid":"Agent::\"bot\"","attrs":{"trust":"standard","owner":"alice"},"parents":["Team::\"team-0\""]},
             {"uid":"Tool::\"sql.query\"","attrs":{"classification":"confidential","environment":"production","writes":false}}],
 "session_id":"s-1","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}`

// benchMixRequest is one request of agentpdp bench's built-in mix
// (cmd/agentpdp/bench.go, agentToolCalls): object references, the agent
// and the tool inline, each with an __entity escape among its attributes.
const benchMixRequest = `{"principal":{"type":"Agent","id":"agent-7"},"action":{"type":"Action","id":"invoke_tool"},"resource":{"type":"Tool","id":"tool-12"},
			"context":{"args":{"query":"select * from t where id = 42","limit":52}},"entities":[{"uid":{"type":"Agent","id":"agent-7"},"parents":[{"type":"Team","id":"platform"}],"attrs":{"owner":{"__entity":{"type":"User","id":"owner-0@example.com"}},"trust":"high"}},{"uid":{"type":"Tool","id":"tool-12"},"parents":[],"attrs":{"classification":"public","environment":"dev","writes":true,"owner_team":{"__entity":{"type":"Team","id":"finance"}},"shared":false}}],"session_id":"s-7","trace_id":"000000000000000000c0ffee0ddba11d"}`

// benchRequestNoEntities is benchRequest with its two entities static, in
// the policy directory, instead of inline.
const benchRequestNoEntities = `{"principal":"Agent::\"bot\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"sql.query\"",
 "context":{"args":{"query":"select 1","limit":10}},"session_id":"s-1","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}`

const benchEntities = `[{"uid":{"type":"Agent","id":"bot"},"attrs":{"trust":"standard","owner":"alice"},"parents":[{"type":"Team","id":"team-0"}]},
 {"uid":{"type":"Tool","id":"sql.query"},"attrs":{"classification":"confidential","environment":"production","writes":false},"parents":[]}]`

func BenchmarkEngine_Evaluate(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		for _, inline := range []bool{true, false} {
			body, static := benchRequest, benchEntities
			if inline {
				static = ""
			} else {
				body = benchRequestNoEntities
			}
			e := newEngineB(b, benchPolicies(n), static)
			req, err := wire.DecodeRequest([]byte(body))
			if err != nil {
				b.Fatal(err)
			}
			name := fmt.Sprintf("policies=%d/entities=static", n)
			if inline {
				name = fmt.Sprintf("policies=%d/entities=inline", n)
			}
			b.Run(name, func(b *testing.B) {
				defer reportCPU(b)()
				for b.Loop() {
					d, err := e.Evaluate(req)
					if err != nil {
						b.Fatal(err)
					}
					if d.Decision != wire.Allow {
						b.Fatalf("want allow, got %s", d.Decision)
					}
				}
			})
		}
	}
}

// BenchmarkCedarAuthorize is the floor: cedar.Authorize alone on the same
// policies and entities, with nothing decoded, normalised or partitioned.
func BenchmarkCedarAuthorize(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		ps, err := cedar.NewPolicySetFromBytes("bench.cedar", []byte(benchPolicies(n)))
		if err != nil {
			b.Fatal(err)
		}
		bot, tool := types.NewEntityUID("Agent", "bot"), types.NewEntityUID("Tool", "sql.query")
		ents := types.EntityMap{
			bot: {UID: bot, Parents: types.NewEntityUIDSet(types.NewEntityUID("Team", "team-0")),
				Attributes: types.NewRecord(types.RecordMap{"trust": types.String("standard"), "owner": types.String("alice")})},
			tool: {UID: tool, Attributes: types.NewRecord(types.RecordMap{"classification": types.String("confidential"),
				"environment": types.String("production"), "writes": types.False})},
		}
		req := cedar.Request{Principal: bot, Action: types.NewEntityUID("Action", "invoke_tool"), Resource: tool,
			Context: types.NewRecord(types.RecordMap{"args": types.NewRecord(types.RecordMap{"query": types.String("select 1"), "limit": types.Long(10)})})}
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			for b.Loop() {
				if dec, _ := cedar.Authorize(ps, ents, req); dec != cedar.Allow {
					b.Fatal("want allow")
				}
			}
		})
	}
}

func BenchmarkDecodeRequest(b *testing.B) {
	defer reportCPU(b)()
	for b.Loop() {
		if _, err := wire.DecodeRequest([]byte(benchRequest)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServer_Authorize is the whole path: HTTP over the Unix socket,
// decode, evaluate, a durable (synchronous=FULL) group commit, answer.
func BenchmarkServer_Authorize(b *testing.B) {
	for _, durability := range []decisionlog.Durability{decisionlog.DurabilityFull, decisionlog.DurabilityNormal} {
		b.Run("durability="+string(durability), func(b *testing.B) {
			d := pdptest.ServeB(b, benchPolicies(100), durability)
			req, _ := wire.DecodeRequest([]byte(benchRequest))
			b.SetParallelism(32) // 64 concurrent clients on 2 cores
			b.ResetTimer()
			defer reportCPU(b)()
			b.RunParallel(func(pb *testing.PB) {
				cl := client.New(d.Sock)
				defer cl.Close()
				for pb.Next() {
					if _, err := cl.Authorize(b.Context(), req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func newEngineB(b *testing.B, policies, entities string) *pdp.Engine {
	b.Helper()
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bench.cedar"), []byte(policies), 0o644); err != nil {
		b.Fatal(err)
	}
	if entities != "" {
		if err := os.WriteFile(filepath.Join(dir, "bench.entities.json"), []byte(entities), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	// The inline variant describes its principal in the request, as clients
	// did before the trust boundary: request_entities trusted keeps the two
	// variants comparable with the figures from before it.
	e, err := pdp.NewEngine(pdp.Options{Policies: dir, Trust: pdp.TrustOptions{RequestEntities: pdp.RequestEntitiesTrusted}})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := pdptest.LoadNow(b.Context(), e, "bench"); err != nil {
		b.Fatal(err)
	}
	return e
}
