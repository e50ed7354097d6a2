package pdp_test

import (
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/agentpdp/agentpdp/internal/cedarcorpus"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/policy"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// TestCedarCorpus checks that agentpdp's Cedar mode (check --cedar-semantics)
// reproduces Rust Cedar's decision, reasons and errors, and its on_error:
// skip mode the decision, on every case of the Cedar integration corpus
// shipped in cedar-go (every 20th with -short).
func TestCedarCorpus(t *testing.T) {
	cases, err := cedarcorpus.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 1000 {
		t.Fatalf("corpus has %d cases; expected thousands", len(cases))
	}
	requests := 0
	for i, tc := range cases {
		if testing.Short() && i%20 != 0 {
			continue
		}
		// Policies that do not validate are still authorized by Cedar; the
		// schema then only types the entities.
		validation := policy.ValidateStrict
		if !tc.ShouldValidate {
			validation = policy.ValidateOff
		}
		fsys := fstest.MapFS{
			"policy.cedar":         {Data: tc.Policies},
			"corpus.cedarschema":   {Data: tc.Schema},
			"corpus.entities.json": {Data: tc.Entities},
		}
		snap, err := policy.LoadFS(fsys, "corpus", policy.LoadOptions{Validation: validation})
		if err != nil {
			t.Errorf("%s: load: %v", tc.Name, err)
			continue
		}
		cedarEngine := engineFor(t, snap, pdp.Options{CedarSemantics: true})
		// on_error skip is Cedar's rule for erroring policies; the trust
		// boundary is not Cedar's, and corpus principals are often unknown.
		skipEngine := engineFor(t, snap, pdp.Options{OnError: wire.OnErrorSkip, Trust: pdp.TrustOptions{AllowUnknownPrincipal: true}})
		for _, r := range tc.Requests {
			requests++
			req, err := wire.DecodeRequest(r.Body)
			if err != nil {
				t.Errorf("%s %s: decode: %v", tc.Name, r.Desc, err)
				continue
			}
			d, err := cedarEngine.Evaluate(req)
			if err != nil {
				t.Errorf("%s %s: %v", tc.Name, r.Desc, err)
				continue
			}
			wantReasons, wantErrors := corpusIDs(r.Reasons), corpusIDs(r.Errors)
			if d.Decision != wire.Verdict(r.Decision) || !slices.Equal(reasonIDs(d.Reasons), wantReasons) || !slices.Equal(errorIDs(d.Errors), wantErrors) {
				t.Errorf("%s %s: got %s %v errors %v, Cedar says %s %v errors %v", tc.Name, r.Desc,
					d.Decision, reasonIDs(d.Reasons), errorIDs(d.Errors), r.Decision, wantReasons, wantErrors)
			}
			if d2, err := skipEngine.Evaluate(req); err != nil || d2.Decision != wire.Verdict(r.Decision) {
				t.Errorf("%s %s: on_error skip: got %v (%v), Cedar says %s", tc.Name, r.Desc, d2, err, r.Decision)
			}
		}
	}
	t.Logf("%d requests compared with Rust Cedar", requests)
}

// corpusIDs turns Cedar's policyN ids into agentpdp's file:index ids.
func corpusIDs(ids []string) []string {
	out := []string{}
	for _, id := range ids {
		out = append(out, "policy.cedar:"+strings.TrimPrefix(id, "policy"))
	}
	slices.Sort(out)
	return out
}

// engineFor makes an engine serving an already loaded snapshot.
func engineFor(t *testing.T, snap *policy.Snapshot, opts pdp.Options) *pdp.Engine {
	t.Helper()
	e, err := pdp.NewEngine(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Use(t.Context(), snap, "test"); err != nil {
		t.Fatal(err)
	}
	return e
}
