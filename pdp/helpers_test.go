package pdp_test

import (
	"encoding/json"
	"testing"

	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// newEngine loads files into a fresh directory and an engine without a log.
func newEngine(t *testing.T, files map[string]string, opts pdp.Options) *pdp.Engine {
	t.Helper()
	dir := t.TempDir()
	pdptest.WriteFiles(t, dir, files)
	opts.Policies = dir
	e, err := pdp.NewEngine(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pdptest.LoadNow(t.Context(), e, "test"); err != nil {
		t.Fatalf("load policies: %v", err)
	}
	return e
}

// mustRequest decodes a request as the server would.
func mustRequest(t *testing.T, s string) *wire.Request {
	t.Helper()
	r, err := wire.DecodeRequest([]byte(s))
	if err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return r
}

func reasonIDs(rs []wire.Reason) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.Policy)
	}
	return out
}

func errorIDs(es []wire.EvalError) []string {
	out := []string{}
	for _, e := range es {
		out = append(out, e.Policy)
	}
	return out
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// okRefs are the three required fields of a request.
const okRefs = `"principal":"Agent::\"a\"","action":"Action::\"go\"","resource":"Tool::\"t\""`
