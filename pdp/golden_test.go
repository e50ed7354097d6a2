package pdp_test

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

var updateGolden = flag.Bool("update", false, "rewrite pdp/testdata/*.golden from what the engine does now")

// goldenRequests are requests beside the bench mix that take the request
// path's other turns: no context, a null one, the daemon's own keys set by
// the request, a token with no issuer configured, refusals in the context
// and in an entity's attributes, an escape at the top of the context.
var goldenRequests = []string{
	`{"principal":{"type":"Agent","id":"agent-3"},"action":{"type":"Action","id":"invoke_tool"},"resource":{"type":"Tool","id":"tool-1"}}`,
	`{"principal":"Agent::\"agent-3\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"tool-1\"","context":null,"entities":[]}`,
	`{"principal":"Agent::\"agent-3\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"tool-1\"","context":{}}`,
	`{"principal":"Agent::\"agent-3\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"tool-1\"","context":{"caller":{"uid":0}}}`,
	`{"principal":"Agent::\"agent-3\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"tool-1\"","context":{"identity":{"verified":true}}}`,
	`{"principal":"Agent::\"agent-3\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"tool-1\"","context":{"a":1},"token":"abc.def.ghi"}`,
	`{"principal":"Agent::\"agent-3\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"tool-1\"","context":{"k":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl"}}`,
	`{"principal":"Agent::\"agent-3\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"tool-1\"","context":{"__entity":{"type":"User","id":"a"}}}`,
	`{"principal":"Agent::\"agent-3\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"tool-1\"","context":{"__entity":{"type":"User","id":"a"},"x":[1,2.5,null,"s"]}}`,
	`{"principal":"Agent::\"agent-3\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"tool-1\"","context":{"classification":"restricted","n":1.25},
	  "entities":[{"uid":"Agent::\"agent-3\"","attrs":{"trust":"high","owner":{"__entity":{"type":"User","id":"o"}}},"parents":["Team::\"finance\""]},
	              {"uid":"Tool::\"tool-1\"","attrs":{"classification":"public","environment":"dev","writes":true,"owner_team":{"__entity":{"type":"Team","id":"finance"}},"shared":false}}]}`,
	`{"principal":"Agent::\"agent-3\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"tool-1\"","entities":[{"uid":"Tool::\"tool-1\"","attrs":{"x":{"y":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl"}}}]}`,
	`{"principal":"Agent::\"agent-3\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"tool-1\"","entities":[{"uid":"Tool::\"tool-1\""},{"uid":"Tool::\"tool-1\""}]}`,
}

var (
	goldenDecisionID = regexp.MustCompile(`"decision_id":"[0-9a-f-]{36}"`)
	goldenEvalNanos  = regexp.MustCompile(`"eval_ns":[0-9]+`)
	// The policy version digests the files' paths, which begin with the
	// checkout's: it differs from one checkout to the next.
	goldenPolicyVersion = regexp.MustCompile(`"policy_version":"sha256:[0-9a-f]{64}"`)
)

// TestRequestPath_Golden decides the bench mix and goldenRequests as the
// daemon does (for a kernel-attested caller and without one), replays
// every row, and compares each answer, refusal and logged row (its
// decision id, evaluation time, the checkout's path and the policy
// version, which digests that path, taken out) with
// testdata/requestpath.golden, written by the engine before the request
// path's speed-ups: they must change nothing a caller or the log sees.
// Run with -update to rewrite it after a change that means to.
func TestRequestPath_Golden(t *testing.T) {
	e, rec, root := benchEngine(t)
	var out strings.Builder
	bodies := benchMix(96)
	for _, s := range goldenRequests {
		bodies = append(bodies, []byte(s))
	}
	for i, body := range bodies {
		for _, peer := range []*wire.Peer{benchPeer, nil} {
			if i < 64 && peer == nil {
				continue
			}
			req, err := wire.DecodeRequest(body)
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			rec.bodies = rec.bodies[:0]
			d, err := e.Decide(t.Context(), req, peer)
			fmt.Fprintf(&out, "%d peer=%v ", i, peer != nil)
			if err != nil {
				fmt.Fprintf(&out, "error %q\n", err)
				continue
			}
			b, err := wire.MarshalDecision(d)
			if err != nil {
				t.Fatal(err)
			}
			row := rec.bodies[len(rec.bodies)-1]
			norm := goldenDecisionID.ReplaceAll(row, []byte(`"decision_id":"x"`))
			norm = goldenEvalNanos.ReplaceAll(norm, []byte(`"eval_ns":0`))
			norm = goldenPolicyVersion.ReplaceAll(norm, []byte(`"policy_version":"x"`))
			norm = []byte(strings.ReplaceAll(string(norm), root+"/", ""))
			sum := sha256.Sum256(norm)
			fmt.Fprintf(&out, "%s %s row %s", d.Decision, reasonNames(d.Reasons), hex.EncodeToString(sum[:12]))
			// Replay reads the row back: the same context, evidence and verdict.
			var r wire.DecisionRecord
			if err := (wire.Reader{}).Unmarshal(row, &r); err != nil {
				t.Fatalf("request %d: read back: %v", i, err)
			}
			rd, err := pdp.Replay(e.Snapshot(), &r, time.Now())
			if err != nil {
				t.Fatalf("request %d: replay: %v", i, err)
			}
			if rd.Decision != d.Decision || reasonNames(rd.Reasons) != reasonNames(d.Reasons) {
				t.Errorf("request %d: replayed %s %s, decided %s %s (answer %s)", i, rd.Decision, reasonNames(rd.Reasons), d.Decision, reasonNames(d.Reasons), b)
			}
			// Evaluate (agentpdp check) on the same request, in process.
			ed, err := e.Evaluate(req)
			if err != nil {
				fmt.Fprintf(&out, " evaluate error %q\n", err)
				continue
			}
			fmt.Fprintf(&out, " evaluate %s %s\n", ed.Decision, reasonNames(ed.Reasons))
		}
	}
	path := "testdata/requestpath.golden"
	if *updateGolden {
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(out.String(), "\n")
	for i, w := range strings.Split(string(want), "\n") {
		if i >= len(got) || got[i] != w {
			g := ""
			if i < len(got) {
				g = got[i]
			}
			t.Fatalf("line %d:\n got %s\nwant %s", i+1, g, w)
		}
	}
	if len(got) != len(strings.Split(string(want), "\n")) {
		t.Fatalf("%d lines, want %d", len(got), len(strings.Split(string(want), "\n")))
	}
}

func reasonNames(rs []wire.Reason) string {
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = r.Policy
	}
	return "[" + strings.Join(names, ",") + "]"
}
