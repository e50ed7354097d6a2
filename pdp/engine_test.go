package pdp_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// Policies for the semantics table: each is switched on by a context flag,
// so one request can satisfy any combination.
const semanticsPolicies = `
@id("hard-permit")
permit (principal, action, resource) when { context has hp };

@id("step-permit")
@step_up("a human approves")
permit (principal, action, resource) when { context has sp };

@id("hard-forbid")
forbid (principal, action, resource) when { context has hf };

@id("step-forbid")
@step_up("production change needs approval")
forbid (principal, action, resource) when { context has sf };

@id("erroring-forbid")
forbid (principal, action, resource) when { context has ef && context.ef.missing };

@id("erroring-permit")
permit (principal, action, resource) when { context has ep && context.ep.missing };

@id("second-hard-forbid")
forbid (principal, action, resource) when { context has hf2 };
`

func TestEngine_Evaluate(t *testing.T) {
	tests := []struct {
		name        string
		flags       []string
		onError     wire.OnError
		cedar       bool
		want        string
		wantReasons []string
		wantErrors  []string
	}{
		{name: "NothingPermits", want: string(wire.Deny), wantReasons: []string{"no_permit"}},
		{name: "HardPermit", flags: []string{"hp"}, want: string(wire.Allow), wantReasons: []string{"hard-permit"}},
		{name: "ForbidWins", flags: []string{"hp", "hf"}, want: string(wire.Deny), wantReasons: []string{"hard-forbid"}},
		{name: "HardForbidBeatsStepUp", flags: []string{"hp", "hf", "sf"}, want: string(wire.Deny), wantReasons: []string{"hard-forbid"}},
		{name: "ReasonsSorted", flags: []string{"hp", "hf2", "hf"}, want: string(wire.Deny), wantReasons: []string{"hard-forbid", "second-hard-forbid"}},
		{name: "StepUpForbid", flags: []string{"hp", "sf"}, want: string(wire.StepUp), wantReasons: []string{"step-forbid"}},
		{name: "StepUpForbidWithoutPermitDenies", flags: []string{"sf"}, want: string(wire.Deny), wantReasons: []string{"no_permit"}},
		{name: "OnlyStepUpPermit", flags: []string{"sp"}, want: string(wire.StepUp), wantReasons: []string{"step-permit"}},
		{name: "HardPermitBeatsStepUpPermit", flags: []string{"sp", "hp"}, want: string(wire.Allow), wantReasons: []string{"hard-permit"}},
		{name: "StepUpForbidOverStepUpPermit", flags: []string{"sp", "sf"}, want: string(wire.StepUp), wantReasons: []string{"step-forbid"}},
		{name: "ErroringForbidFailsClosed", flags: []string{"hp", "ef"}, want: string(wire.Deny),
			wantReasons: []string{"erroring-forbid"}, wantErrors: []string{"erroring-forbid"}},
		{name: "ErroringForbidSkipped", flags: []string{"hp", "ef"}, onError: wire.OnErrorSkip, want: string(wire.Allow),
			wantReasons: []string{"hard-permit"}, wantErrors: []string{"erroring-forbid"}},
		{name: "ErroringPermitIsIgnored", flags: []string{"hp", "ep"}, want: string(wire.Allow),
			wantReasons: []string{"hard-permit"}, wantErrors: []string{"erroring-permit"}},
		{name: "ErroringPermitAloneDenies", flags: []string{"ep"}, want: string(wire.Deny),
			wantReasons: []string{"no_permit"}, wantErrors: []string{"erroring-permit"}},
		{name: "ErrorsSorted", flags: []string{"hp", "ep", "ef"}, onError: wire.OnErrorSkip, want: string(wire.Allow),
			wantReasons: []string{"hard-permit"}, wantErrors: []string{"erroring-forbid", "erroring-permit"}},
		{name: "CedarSemanticsIgnoreStepUp", flags: []string{"sp"}, cedar: true, want: string(wire.Allow), wantReasons: []string{"step-permit"}},
		{name: "CedarSemanticsStepUpForbidDenies", flags: []string{"hp", "sf"}, cedar: true, want: string(wire.Deny), wantReasons: []string{"step-forbid"}},
		{name: "CedarSemanticsSkipErrors", flags: []string{"hp", "ef"}, cedar: true, want: string(wire.Allow),
			wantReasons: []string{"hard-permit"}, wantErrors: []string{"erroring-forbid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngine(t, map[string]string{"p.cedar": semanticsPolicies}, pdp.Options{OnError: tt.onError, CedarSemantics: tt.cedar})
			ctx := map[string]any{}
			for _, f := range tt.flags {
				ctx[f] = true
			}
			req := mustRequest(t, `{"principal":"Agent::\"a\"","action":"Action::\"go\"","resource":"Tool::\"t\"","context":`+toJSON(t, ctx)+`}`)
			d, err := e.Evaluate(req)
			if err != nil {
				t.Fatal(err)
			}
			if d.Decision != wire.Verdict(tt.want) {
				t.Errorf("decision: got %s, want %s", d.Decision, tt.want)
			}
			if got := reasonIDs(d.Reasons); !slices.Equal(got, tt.wantReasons) {
				t.Errorf("reasons: got %v, want %v", got, tt.wantReasons)
			}
			want := tt.wantErrors
			if want == nil {
				want = []string{}
			}
			if got := errorIDs(d.Errors); !slices.Equal(got, want) {
				t.Errorf("errors: got %v, want %v", got, want)
			}
		})
	}
}

func TestEngine_ReasonCarriesPositionAndAnnotations(t *testing.T) {
	e := newEngine(t, map[string]string{"sub/p.cedar": semanticsPolicies}, pdp.Options{})
	d, err := e.Evaluate(mustRequest(t, `{"principal":"A::\"a\"","action":"B::\"b\"","resource":"C::\"c\"","context":{"hp":1,"sf":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Reasons) != 1 {
		t.Fatalf("reasons: %+v", d.Reasons)
	}
	r := d.Reasons[0]
	if r.Effect != "forbid" || r.Line != 12 || filepathBase(r.File) != "p.cedar" {
		t.Errorf("reason position: got %+v, want forbid at p.cedar:12", r)
	}
	if got := r.Annotations["step_up"]; got != "production change needs approval" {
		t.Errorf("step_up annotation: got %q", got)
	}
	if _, ok := r.Annotations["id"]; ok {
		t.Error("a reason repeats @id, which is its policy already")
	}
	// A policy whose only annotation is @id gives a reason without annotations.
	d, _ = e.Evaluate(mustRequest(t, `{"principal":"A::\"a\"","action":"B::\"b\"","resource":"C::\"c\"","context":{"hp":1}}`))
	if len(d.Reasons) != 1 || d.Reasons[0].Annotations != nil || strings.Contains(toJSON(t, d), `"annotations"`) {
		t.Errorf("reason of an @id-only policy: %s", toJSON(t, d.Reasons))
	}
}

func filepathBase(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}

func TestEngine_Guards(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	e := newEngine(t, map[string]string{"p.cedar": `permit (principal, action, resource);`},
		pdp.Options{Now: func() time.Time { return now }})
	base := `"principal":"Agent::\"a\"","action":"Action::\"go\"","resource":"Tool::\"t\""`
	tests := []struct {
		name, extra, want, reason string
	}{
		{"CredentialValid", `"credential":{"id":"jti-1","expires_at":"2026-11-27T10:00:01Z"}`, string(wire.Allow), "policy0"},
		{"CredentialExpired", `"credential":{"id":"jti-1","expires_at":"2026-11-27T09:59:59Z"}`, string(wire.Deny), pdp.ReasonCredentialExpired},
		{"CredentialExpiresNow", `"credential":{"id":"jti-1","expires_at":"2026-11-27T10:00:00Z"}`, string(wire.Deny), pdp.ReasonCredentialExpired},
		{"ApprovalUnknown", `"approval":"0193-not-approved"`, string(wire.Deny), pdp.ReasonApprovalInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := e.Evaluate(mustRequest(t, "{"+base+","+tt.extra+"}"))
			if err != nil {
				t.Fatal(err)
			}
			if d.Decision != wire.Verdict(tt.want) {
				t.Errorf("decision: got %s, want %s", d.Decision, tt.want)
			}
			if tt.reason == "policy0" {
				tt.reason = "p.cedar:0"
			}
			if len(d.Reasons) != 1 || d.Reasons[0].Policy != tt.reason {
				t.Errorf("reasons: got %+v, want %s", d.Reasons, tt.reason)
			}
			if wire.Verdict(tt.want) == wire.Deny && !d.Reasons[0].Builtin {
				t.Errorf("guard reason not marked builtin: %+v", d.Reasons[0])
			}
		})
	}
}

// TestEngine_RequestEntities: with request_entities: trusted (the old
// behaviour, for deployments whose callers are all trusted) an inline
// entity overrides the entity files; by default (unknown_only) a request
// cannot change what a trusted source says, and refuse takes none at all.
func TestEngine_RequestEntities(t *testing.T) {
	files := map[string]string{
		"p.cedar": `permit (principal, action, resource) when { principal.trust == "high" };`,
		"e.entities.json": `[{"uid":{"type":"Agent","id":"a"},"attrs":{"trust":"low"},"parents":[]},
		                     {"uid":{"type":"Agent","id":"b"},"attrs":{"trust":"high"},"parents":[]}]`,
	}
	static := `{"principal":"Agent::\"a\"","action":"A::\"x\"","resource":"R::\"r\""}`
	override := `{"principal":"Agent::\"a\"","action":"A::\"x\"","resource":"R::\"r\"",
		"entities":[{"uid":"Agent::\"a\"","attrs":{"trust":"high"}}]}`
	addsUnknown := `{"principal":"Agent::\"b\"","action":"A::\"x\"","resource":"R::\"r\"",
		"entities":[{"uid":"R::\"r\"","attrs":{"note":"new"}}]}`
	tests := []struct {
		mode      pdp.RequestEntities
		req, want string // want "" is a 400
	}{
		{pdp.RequestEntitiesTrusted, static, string(wire.Deny)},
		{pdp.RequestEntitiesTrusted, override, string(wire.Allow)},
		{pdp.RequestEntitiesTrusted, addsUnknown, string(wire.Allow)},
		{pdp.RequestEntitiesUnknownOnly, static, string(wire.Deny)},
		{pdp.RequestEntitiesUnknownOnly, override, ""},
		{pdp.RequestEntitiesUnknownOnly, addsUnknown, string(wire.Allow)},
		{pdp.RequestEntitiesRefuse, addsUnknown, ""},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.mode, i), func(t *testing.T) {
			e := newEngine(t, files, pdp.Options{Trust: pdp.TrustOptions{RequestEntities: tt.mode}})
			d, err := e.Evaluate(mustRequest(t, tt.req))
			if tt.want == "" {
				var re *wire.RequestError
				if !errors.As(err, &re) || !strings.HasPrefix(re.Field, "entities[0]") {
					t.Fatalf("got %v %v, want a 400 naming entities[0]", d, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Decision != wire.Verdict(tt.want) {
				t.Errorf("got %s, want %s", d.Decision, tt.want)
			}
			// The request's entity must not leak into the static set.
			if d, _ := e.Evaluate(mustRequest(t, static)); d.Decision != wire.Deny {
				t.Errorf("request entity leaked into later requests: got %s", d.Decision)
			}
		})
	}
}

func TestEngine_DefaultPolicyPack(t *testing.T) {
	e, err := pdp.NewEngine(pdp.Options{Policies: "../policies"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pdptest.LoadNow(t.Context(), e, "test"); err != nil {
		t.Fatalf("the default pack does not load: %v", err)
	}
	if !e.Snapshot().Schema {
		t.Fatal("the default pack was not validated against its schema")
	}
	req := func(agent, tool, ctx string) string {
		return `{"principal":"Agent::\"` + agent + `\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"` + tool + `\"","context":` + ctx + `}`
	}
	tests := []struct{ name, req, want, reason string }{
		{"ReadOwnTeamTool", req("billing-bot", "sql.query", "{}"), string(wire.Allow), "agents-may-invoke-tools"},
		{"ProductionWriteSteps", req("deploy-bot", "k8s.apply", "{}"), string(wire.StepUp), "prod-writes-need-approval"},
		{"StagingWriteAllowed", req("deploy-bot", "k8s.apply-staging", "{}"), string(wire.Allow), "agents-may-invoke-tools"},
		{"RestrictedWithoutTicket", req("billing-bot", "invoices.export", "{}"), string(wire.Deny), "restricted-data-needs-ticket"},
		{"RestrictedWithTicket", req("billing-bot", "invoices.export", `{"ticket":"INC-42"}`), string(wire.Allow), "agents-may-invoke-tools"},
		{"RestrictedWithWrongTicket", req("billing-bot", "invoices.export", `{"ticket":"JIRA-1"}`), string(wire.Deny), "restricted-data-needs-ticket"},
		{"OtherTeamsTool", req("billing-bot", "k8s.apply", "{}"), string(wire.Deny), "other-teams-tools"},
		{"SharedTool", req("billing-bot", "web.search", "{}"), string(wire.Allow), "agents-may-invoke-tools"},
		{"LowTrustSteps", req("intern-bot", "web.search", "{}"), string(wire.StepUp), "low-trust-agents-need-approval"},
		{"Untrusted", req("scraper", "web.search", "{}"), string(wire.Deny), "untrusted-agents"},
		// The entity files describe agents; one they do not hold is unknown.
		{"UnknownAgent", req("nobody", "web.search", "{}"), string(wire.Deny), pdp.ReasonUnknownPrincipal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := e.Evaluate(mustRequest(t, tt.req))
			if err != nil {
				t.Fatal(err)
			}
			if d.Decision != wire.Verdict(tt.want) || len(d.Reasons) == 0 || d.Reasons[0].Policy != tt.reason {
				t.Errorf("got %s %v, want %s [%s]", d.Decision, reasonIDs(d.Reasons), tt.want, tt.reason)
			}
		})
	}
}
