package pdp_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// capture is a Recorder that keeps the decision rows' bodies.
type capture struct {
	seq    int64
	bodies [][]byte
}

func (c *capture) Append(_ context.Context, es ...*decisionlog.Entry) error {
	for _, e := range es {
		c.seq++
		e.Seq = c.seq
		if e.Kind == decisionlog.KindDecision {
			c.bodies = append(c.bodies, e.Body)
		}
	}
	return nil
}

// benchMix is requests as `agentpdp bench` sends them (cmd/agentpdp's
// agentToolCalls): agents with a team and a trust level calling tools with
// a classification, an environment and a writes flag, inline.
func benchMix(n int) [][]byte {
	teams := []string{"finance", "platform"}
	trusts := []string{"standard", "standard", "high", "low", "untrusted"}
	classes := []string{"public", "internal", "confidential", "restricted"}
	envs := []string{"dev", "staging", "production"}
	r := rand.New(rand.NewPCG(1, 1))
	reqs := make([][]byte, n)
	for i := range reqs {
		a, t := r.IntN(50), r.IntN(20)
		team := teams[a%len(teams)]
		agent := fmt.Sprintf(`{"uid":{"type":"Agent","id":"agent-%d"},"parents":[{"type":"Team","id":%q}],"attrs":{"owner":{"__entity":{"type":"User","id":"owner-%d@example.com"}},"trust":%q}}`,
			a, team, a%7, trusts[a%len(trusts)])
		tool := fmt.Sprintf(`{"uid":{"type":"Tool","id":"tool-%d"},"parents":[{"type":"ToolCatalog","id":"default"}],"attrs":{"classification":%q,"environment":%q,"writes":%v,"owner_team":{"__entity":{"type":"Team","id":%q}},"shared":%v}}`,
			t, classes[t%len(classes)], envs[t%len(envs)], t%3 == 0, teams[t%len(teams)], t%5 == 0)
		reqs[i] = fmt.Appendf(nil, `{"principal":{"type":"Agent","id":"agent-%d"},"action":{"type":"Action","id":"invoke_tool"},"resource":{"type":"Tool","id":"tool-%d"},
			"context":{"args":{"query":"select * from t where id = %d","limit":%d}},"entities":[%s,%s],"session_id":"s-%d","trace_id":"%032x"}`,
			a, t, i, 10+i%90, agent, tool, a, r.Uint64())
	}
	return reqs
}

// benchEngine is an engine deciding as the daemon does under agentpdp
// bench: the repository's default policies (root is the repository), the
// mix's inline entities trusted, its records captured in rec.
func benchEngine(b testing.TB) (e *pdp.Engine, rec *capture, root string) {
	b.Helper()
	rec = new(capture)
	_, file, _, _ := runtime.Caller(0)
	root = filepath.Dir(filepath.Dir(file))
	e, err := pdp.NewEngine(pdp.Options{Policies: filepath.Join(root, "policies"), Recorder: rec, Key: pdptest.TestKey,
		Trust: pdp.TrustOptions{RequestEntities: pdp.RequestEntitiesTrusted}})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := pdptest.LoadNow(b.Context(), e, "bench"); err != nil {
		b.Fatal(err)
	}
	return e, rec, root
}

// benchPeer is the kernel-attested caller of the bench mix.
var benchPeer = &wire.Peer{PID: 48213, UID: 1000, GID: 1000, Exe: "/usr/bin/python3.12", Cgroup: "/user.slice/user-1000.slice/session-3.scope"}

// benchRecords decides the bench mix with the default policies (the
// repository's policies directory) for a local caller, and reads back the
// records the engine wrote.
func benchRecords(b testing.TB, n int) ([]*wire.DecisionRecord, []*wire.Decision) {
	b.Helper()
	e, rec, root := benchEngine(b)
	peer := benchPeer
	var ds []*wire.Decision
	verdicts := map[wire.Verdict]int{}
	for _, body := range benchMix(n) {
		req, err := wire.DecodeRequest(body)
		if err != nil {
			b.Fatal(err)
		}
		d, err := e.Decide(b.Context(), req, peer)
		if err != nil {
			b.Fatal(err)
		}
		ds = append(ds, d)
		verdicts[d.Decision]++
	}
	if len(verdicts) < 3 {
		b.Fatalf("the mix gave %v: want allow, deny and step_up", verdicts)
	}
	rs := make([]*wire.DecisionRecord, len(rec.bodies))
	for i, body := range rec.bodies {
		rs[i] = new(wire.DecisionRecord)
		if err := (wire.Reader{}).Unmarshal(body, rs[i]); err != nil {
			b.Fatalf("read back record %d: %v", i, err)
		}
		// The same bytes wherever the repository is checked out, and
		// however loaded the machine is: a typical evaluation time.
		for j := range rs[i].Reasons {
			rs[i].Reasons[j].File = strings.TrimPrefix(rs[i].Reasons[j].File, root+"/")
		}
		rs[i].EvalNanos = 41873
	}
	return rs, ds
}

// BenchmarkMarshalRecord writes the records of the bench mix, decided by
// the default policies: the body of every decision row.
func BenchmarkMarshalRecord(b *testing.B) {
	rs, _ := benchRecords(b, 64)
	var size int
	i := 0
	defer reportCPU(b)() // the machine is shared: CPU, not wall time
	for b.Loop() {
		body, err := wire.MarshalRecord(rs[i%len(rs)])
		if err != nil {
			b.Fatal(err)
		}
		size += len(body)
		i++
	}
	b.ReportMetric(float64(size)/float64(i), "bytes/record")
}

// BenchmarkMarshalDecision writes the answers to the bench mix.
func BenchmarkMarshalDecision(b *testing.B) {
	_, ds := benchRecords(b, 64)
	i := 0
	defer reportCPU(b)()
	for b.Loop() {
		if _, err := wire.MarshalDecision(ds[i%len(ds)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// The records of the bench mix, as the engine makes them, are written by
// MarshalRecord exactly as the library writes them (the fast encoder's
// own tests are in pdp/wire).
func TestMarshalRecord_BenchMixAsLibrary(t *testing.T) {
	rs, ds := benchRecords(t, 64)
	for i, r := range rs {
		got, err := wire.MarshalRecord(r)
		want, werr := wire.Marshal(r)
		if err != nil || werr != nil || string(got) != string(want) {
			t.Fatalf("record %d: MarshalRecord %v, library %v\n%s\n%s", i, err, werr, got, want)
		}
	}
	for i, d := range ds {
		got, err := wire.MarshalDecision(d)
		want, werr := wire.Marshal(d)
		if err != nil || werr != nil || string(got) != string(want) {
			t.Fatalf("decision %d: MarshalDecision %v, library %v\n%s\n%s", i, err, werr, got, want)
		}
	}
}
