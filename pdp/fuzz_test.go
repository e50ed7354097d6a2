package pdp_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/policy"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

var fuzzSeeds = []string{
	`{"principal":"Agent::\"a\"","action":"Action::\"x\"","resource":"Tool::\"t\""}`,
	`{"principal":{"type":"Agent","id":"a"},"action":{"__entity":{"type":"Action","id":"x"}},"resource":"Tool::\"t\"",
	  "context":{"f":1.5,"n":null,"big":123456789012345678901234567890,"e":1e300,"list":[1,null,{"__extn":{"fn":"decimal","arg":"1.0"}}],
	  "ip":{"__extn":{"fn":"ip","arg":"10.0.0.1"}},"u":"\u2028<&>"},
	  "entities":[{"uid":"Agent::\"a\"","attrs":{"trust":"high","score":0.25},"parents":["Team::\"t\""],"tags":{"k":"v"}}],
	  "credential":{"id":"jti","scopes":["a"],"expires_at":"2030-01-01T00:00:00Z"},"approval":"x","prompt":"p"}`,
	`{"principal":"Org::Agent::\"a \\\" b\"","action":"A::\"\"","resource":"R::\"\\u{1F600}\""}`,
	`{"requests":[]}`, `[]`, `{`, `null`, `{"context":[]}`, `{"principal":"A::\"a\"","action":"A::\"a\"","resource":"A::\"a\"","context":{"__entity":{"type":"A","id":"b"}}}`,
}

// FuzzDecideRequest: whatever bytes arrive, the decoder and the engine either
// decide or name what was wrong; they never panic, and a decision is one of
// the three answers.
func FuzzDecideRequest(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	e, err := pdp.NewEngine(pdp.Options{Policies: "../policies"})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := pdptest.LoadNow(f.Context(), e, "fuzz"); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := wire.DecodeRequest(b)
		if err != nil {
			var re *wire.RequestError
			if !errors.As(err, &re) {
				t.Fatalf("decode error is not a RequestError: %v", err)
			}
			return
		}
		d, err := e.Evaluate(req)
		if err != nil {
			var re *wire.RequestError
			if !errors.As(err, &re) {
				t.Fatalf("evaluate error is not a RequestError: %v", err)
			}
			return
		}
		switch d.Decision {
		case wire.Allow, wire.Deny, wire.StepUp:
		default:
			t.Fatalf("decision %q", d.Decision)
		}
		// A decided request must survive the round trip the log makes.
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("marshal a decoded request: %v", err)
		}
		if _, err := wire.DecodeRequest(again); err != nil {
			t.Fatalf("a decoded request does not decode again: %v\n%s", err, again)
		}
	})
}

// FuzzParseEntityRef: the Cedar form parses or is refused, and what parses
// prints back to something that parses to the same reference.
func FuzzParseEntityRef(f *testing.F) {
	for _, s := range []string{`Agent::"a"`, `A::B::"x y"`, `A::"\"\\\n\u{1F600}"`, `Agent::billing-bot`, `::"x"`, `A::""`, `"x"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := wire.ParseEntityRef(s)
		if err != nil {
			return
		}
		back, err := wire.ParseEntityRef(r.String())
		if err != nil || back != r {
			t.Fatalf("%q parsed to %+v, printed %q, reparsed to %+v (%v)", s, r, r.String(), back, err)
		}
	})
}

// FuzzLoadPolicies: any policy, schema and entities text loads or is a
// LoadError naming a file; it never panics, and what loads evaluates.
func FuzzLoadPolicies(f *testing.F) {
	f.Add(`permit (principal, action, resource);`, "", "")
	f.Add(semanticsPolicies, "", "")
	f.Add(`@id("x") @step_up("y") @mode("log_only") forbid (principal == A::"a", action in [B::"b"], resource is C) when { context.x like "*a" } unless { 1 > 2 };`, pdptest.TestSchema, "")
	f.Add(`permit (principal, action == Action::"invoke_tool", resource) when { principal.trust == "high" };`, pdptest.TestSchema, `[{"uid":{"type":"Agent","id":"a"},"attrs":{"trust":"high"},"parents":[]}]`)
	f.Add(`forbid (`, `entity A`, `[{"uid":`)
	f.Fuzz(func(t *testing.T, text, schema, entities string) {
		fsys := fstest.MapFS{"p.cedar": {Data: []byte(text)}}
		if schema != "" {
			fsys["s.cedarschema"] = &fstest.MapFile{Data: []byte(schema)}
		}
		if entities != "" {
			fsys["e.entities.json"] = &fstest.MapFile{Data: []byte(entities)}
		}
		snap, err := policy.LoadFS(fsys, "fuzz", policy.LoadOptions{})
		if err != nil {
			var le *policy.LoadError
			if !errors.As(err, &le) || len(le.Problems) == 0 {
				t.Fatalf("load error is not a LoadError with problems: %v", err)
			}
			for _, p := range le.Problems {
				if !strings.HasPrefix(p.File, "fuzz/") {
					t.Fatalf("a problem names no file of the directory: %+v", p)
				}
			}
			return
		}
		policy.Lint(snap)
		e, err := pdp.NewEngine(pdp.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Use(t.Context(), snap, "fuzz"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Evaluate(mustRequest(t, `{`+okRefs+`,"context":{"x":"abc"}}`)); err != nil {
			t.Fatalf("a loaded snapshot does not evaluate: %v", err)
		}
	})
}
