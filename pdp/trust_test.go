package pdp_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/identity"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

func defaultPack(t *testing.T, opts pdp.Options) *pdp.Engine {
	t.Helper()
	opts.Policies = "../policies"
	e, err := pdp.NewEngine(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pdptest.LoadNow(t.Context(), e, "test"); err != nil {
		t.Fatal(err)
	}
	return e
}

// want400 asserts err is a 400 naming field and containing each of words.
func want400(t *testing.T, err error, field string, words ...string) {
	t.Helper()
	var re *wire.RequestError
	if !errors.As(err, &re) {
		t.Fatalf("got %v, want a 400 naming %s", err, field)
	}
	if !strings.HasPrefix(re.Field, field) {
		t.Errorf("400 names %q, want %q: %v", re.Field, field, err)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("400 %q does not say %q", err, w)
		}
	}
}

// TestTrust_Escalations: each way an agent raised its standing with the
// default pack, by describing itself or the things it touches, is refused.
func TestTrust_Escalations(t *testing.T) {
	e := defaultPack(t, pdp.Options{})
	req := func(agent, tool, entities string) string {
		return `{"principal":"Agent::\"` + agent + `\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"` + tool + `\"","entities":` + entities + `}`
	}
	selfTrust := func(agent string) string {
		return `[{"uid":{"type":"Agent","id":"` + agent + `"},"attrs":{"trust":"high","owner":{"__entity":{"type":"User","id":"bob@example.com"}}},"parents":[{"type":"Team","id":"platform"}]}]`
	}
	tests := []struct {
		name, req, field string
		words            []string
	}{
		{"DeployBotTrustsItself", req("deploy-bot", "k8s.apply", selfTrust("deploy-bot")), "entities[0]", []string{`Agent::"deploy-bot"`, "trusted source"}},
		{"ScraperTrustsItself", req("scraper", "web.search", selfTrust("scraper")), "entities[0]", []string{`Agent::"scraper"`}},
		{"InvoicesExportDeclassified", req("billing-bot", "invoices.export",
			`[{"uid":"Tool::\"invoices.export\"","attrs":{"classification":"public","environment":"production","writes":false,"owner_team":{"__entity":{"type":"Team","id":"finance"}},"shared":false}}]`),
			"entities[0]", []string{`Tool::"invoices.export"`}},
		{"FinanceJoinsPlatform", req("billing-bot", "k8s.apply", `[{"uid":"Team::\"finance\"","parents":["Team::\"platform\""]}]`), "entities[0]", []string{`Team::"finance"`}},
		{"ToolRewritten", req("billing-bot", "k8s.apply",
			`[{"uid":"Tool::\"k8s.apply\"","attrs":{"classification":"internal","environment":"staging","writes":true,"owner_team":{"__entity":{"type":"Team","id":"finance"}},"shared":true}}]`),
			"entities[0]", []string{`Tool::"k8s.apply"`}},
		{"NewToolJoinsTheCatalog", req("deploy-bot", "exfil",
			`[{"uid":"Tool::\"exfil\"","attrs":{"classification":"public","environment":"dev","writes":false,"owner_team":{"__entity":{"type":"Team","id":"platform"}},"shared":true},"parents":["ToolCatalog::\"default\""]}]`),
			"entities[0].parents[0]", []string{`ToolCatalog::"default"`, "cannot add members"}},
		{"NewAgentJoinsPlatform", req("billing-bot", "web.search",
			`[{"uid":"Agent::\"helper\"","attrs":{"trust":"high","owner":{"__entity":{"type":"User","id":"bob@example.com"}}},"parents":["Team::\"platform\""]}]`),
			"entities[0].parents[0]", []string{`Team::"platform"`}},
		{"UnknownAgentDescribesItself", req("ghost", "web.search", selfTrust("ghost")), "entities[0]", []string{`Agent::"ghost"`, "principal"}},
		{"ActionJoinsAGroup", req("billing-bot", "web.search", `[{"uid":"Action::\"invoke_tool\"","parents":["Action::\"admin\""]}]`), "entities[0].uid", []string{"Action"}},
		{"NamespacedAction", req("billing-bot", "web.search", `[{"uid":"NS::Action::\"x\""}]`), "entities[0].uid", []string{"Action"}},
		{"SchemaTypeMismatch", req("billing-bot", "web.search",
			`[{"uid":"Agent::\"helper\"","attrs":{"trust":5,"owner":{"__entity":{"type":"User","id":"bob@example.com"}}},"parents":[]}]`),
			"entities[0]", []string{`Agent::"helper"`, "schema", "trust"}},
		{"UnknownEntityType", req("billing-bot", "web.search", `[{"uid":"Gadget::\"g\""}]`), "entities[0]", []string{"schema"}},
		{"ContextCaller", `{"principal":"Agent::\"billing-bot\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"web.search\"","context":{"caller":{"uid":0}}}`, "context.caller", nil},
		{"ContextIdentity", `{"principal":"Agent::\"billing-bot\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"web.search\"","context":{"identity":{"verified":true}}}`, "context.identity", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := e.Evaluate(mustRequest(t, tt.req))
			if err == nil {
				t.Fatalf("decided %s %v, want a 400", d.Decision, reasonIDs(d.Reasons))
			}
			want400(t, err, tt.field, tt.words...)
		})
	}
	t.Run("UnknownAgent", func(t *testing.T) {
		d, err := e.Evaluate(mustRequest(t, `{"principal":"Agent::\"ghost\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"web.search\""}`))
		if err != nil {
			t.Fatal(err)
		}
		if d.Decision != wire.Deny || reasonIDs(d.Reasons)[0] != pdp.ReasonUnknownPrincipal {
			t.Errorf("got %s %v, want deny unknown_principal", d.Decision, reasonIDs(d.Reasons))
		}
	})
	t.Run("NewEntityIsAllowed", func(t *testing.T) {
		// What no trusted source knows, a request may add (it is claimed).
		d, err := e.Evaluate(mustRequest(t, `{"principal":"Agent::\"billing-bot\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"sql.query\"",
			"entities":[{"uid":"User::\"carol@example.com\""}]}`))
		if err != nil {
			t.Fatal(err)
		}
		if d.Decision != wire.Allow {
			t.Errorf("got %s %v", d.Decision, reasonIDs(d.Reasons))
		}
	})
}

// inventory is an entity provider answering for the agents it holds, as
// examples/inventory-plugin does.
type inventory map[string]string // agent id → team

func (inv inventory) Entities(_ context.Context, req *wire.Request) ([]wire.Entity, error) {
	team, ok := inv[req.Principal.ID]
	if !ok || req.Principal.Type != "Agent" {
		return nil, nil
	}
	return []wire.Entity{{UID: req.Principal, Attrs: json.RawMessage(`{"trust":"standard"}`), Parents: []wire.EntityRef{{Type: "Team", ID: team}}}}, nil
}

// A tool no trusted source knows, described inline as harmless, is not
// callable: the default pack's catalog does not hold it.
func TestTrust_ClaimedToolIsNotInTheCatalog(t *testing.T) {
	e := defaultPack(t, pdp.Options{})
	d, err := e.Evaluate(mustRequest(t, `{"principal":"Agent::\"deploy-bot\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"exfil\"",
		"entities":[{"uid":"Tool::\"exfil\"","attrs":{"classification":"public","environment":"dev","writes":false,"owner_team":{"__entity":{"type":"Team","id":"platform"}},"shared":true}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if d.Decision != wire.Deny || !slices.Contains(reasonIDs(d.Reasons), "unknown-tools") {
		t.Errorf("got %s %v, want deny unknown-tools", d.Decision, reasonIDs(d.Reasons))
	}
}

func TestTrust_EntityProvider(t *testing.T) {
	log := openLog(t)
	e := newEngine(t, map[string]string{
		"p.cedar": `permit (principal, action, resource) when { principal in Team::"platform" };`,
	}, pdp.Options{Recorder: log, Key: pdptest.TestKey,
		EntityProviders: []pdp.ProviderConfig{{Name: "inventory", Provider: inventory{"billing-bot": "finance"}}}})
	ctx := t.Context()
	// The inventory's entity cannot be redescribed by the agent.
	_, err := e.Decide(ctx, mustRequest(t, `{"principal":"Agent::\"billing-bot\"","action":"A::\"x\"","resource":"R::\"r\"",
		"entities":[{"uid":"Agent::\"billing-bot\"","parents":["Team::\"platform\""]}]}`), nil)
	want400(t, err, "entities[0]", `Agent::"billing-bot"`)
	// An agent the inventory does not know is not anyone.
	d, err := e.Decide(ctx, mustRequest(t, `{"principal":"Agent::\"ghost\"","action":"A::\"x\"","resource":"R::\"r\""}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.Decision != wire.Deny || reasonIDs(d.Reasons)[0] != pdp.ReasonUnknownPrincipal {
		t.Errorf("unknown agent: got %s %v", d.Decision, reasonIDs(d.Reasons))
	}
	// A known agent: its entity is trusted, in the row.
	d, rec := decideLogged(t, e, log, `{"principal":"Agent::\"billing-bot\"","action":"A::\"x\"","resource":"R::\"r\""}`)
	if d.Decision != wire.Deny || rec.Evidence == nil || rec.Evidence.PrincipalEntity != "trusted" ||
		rec.Evidence.Entities[`Agent::"billing-bot"`] != "trusted" {
		t.Errorf("got %s, evidence %+v", d.Decision, rec.Evidence)
	}
}

// TestTrust_SchemaActionGroups: `action read in [readOnly]` in the schema
// makes `action in Action::"readOnly"` hold for read, as Cedar's CLI does.
func TestTrust_SchemaActionGroups(t *testing.T) {
	e := newEngine(t, map[string]string{
		"s.cedarschema": `entity User; entity Doc;
action readOnly;
action read in [readOnly] appliesTo { principal: User, resource: Doc };
action write appliesTo { principal: User, resource: Doc };`,
		"p.cedar": `@id("readers") permit (principal, action in Action::"readOnly", resource);`,
	}, pdp.Options{})
	for action, want := range map[string]string{"read": string(wire.Allow), "write": string(wire.Deny)} {
		d, err := e.Evaluate(mustRequest(t, `{"principal":"User::\"u\"","action":"Action::\"`+action+`\"","resource":"Doc::\"d\""}`))
		if err != nil {
			t.Fatal(err)
		}
		if d.Decision != wire.Verdict(want) {
			t.Errorf("%s: got %s %v, want %s", action, d.Decision, reasonIDs(d.Reasons), want)
		}
	}
	_, err := e.Evaluate(mustRequest(t, `{"principal":"User::\"u\"","action":"Action::\"write\"","resource":"Doc::\"d\"",
		"entities":[{"uid":"Action::\"write\"","parents":["Action::\"readOnly\""]}]}`))
	want400(t, err, "entities[0].uid", "Action")
	if got := e.Snapshot().Entities(); got != 0 {
		t.Errorf("Entities() = %d, want 0: the schema's actions are not entities files' entities", got)
	}
}

const trustAgents = `[{"uid":{"type":"Agent","id":"billing-bot"},"attrs":{},"parents":[]},{"uid":{"type":"Agent","id":"deploy-bot"},"attrs":{},"parents":[]}]`

func TestTrust_VerifiedTokens(t *testing.T) {
	is := pdptest.NewIssuer(t)
	log := openLog(t)
	files := map[string]string{
		"a.entities.json": trustAgents,
		"p.cedar":         `@id("verified-only") permit (principal, action, resource) when { context.identity.verified && context.identity.scopes.contains("invoices:read") };`,
	}
	e := newEngine(t, files, pdp.Options{Recorder: log, Key: pdptest.TestKey, Trust: pdp.TrustOptions{Verifier: is.Verifier(t)}})
	body := func(principal, token string) string {
		return `{"principal":"Agent::\"` + principal + `\"","action":"A::\"x\"","resource":"R::\"r\"","token":"` + token + `",
			"credential":{"id":"forged","issuer":"me","scopes":["admin"]}}`
	}
	tok := is.Token(t, "billing-bot", 10*time.Minute, map[string]any{"scope": "invoices:read"})

	t.Run("Verified", func(t *testing.T) {
		d, rec := decideLogged(t, e, log, body("billing-bot", tok))
		if d.Decision != wire.Allow {
			t.Fatalf("got %s %v", d.Decision, d.Reasons)
		}
		ev := rec.Evidence
		if ev == nil || ev.Principal != "verified" || ev.Credential != "verified" || ev.Identity == nil || !ev.Identity.Verified {
			t.Fatalf("evidence %+v", ev)
		}
		if ev.Identity.TokenSHA256 != identity.Thumbprint(tok) {
			t.Errorf("thumbprint %s", ev.Identity.TokenSHA256)
		}
		// The request's own credential claims give way to the token's.
		c := rec.Request.Credential
		if c == nil || c.ID != "jti-billing-bot" || c.Issuer != "https://idp.example" || strings.Join(c.Scopes, ",") != "invoices:read" {
			t.Errorf("credential %+v", c)
		}
		entry, _ := log.Decision(t.Context(), d.DecisionID)
		if strings.Contains(string(entry.Body), tok) || strings.Contains(string(entry.Body), strings.Split(tok, ".")[1]) {
			t.Error("the token reached the log")
		}
	})
	t.Run("PrincipalMismatch", func(t *testing.T) {
		d, rec := decideLogged(t, e, log, body("deploy-bot", tok))
		if d.Decision != wire.Deny || reasonIDs(d.Reasons)[0] != pdp.ReasonPrincipalMismatch {
			t.Errorf("got %s %v", d.Decision, reasonIDs(d.Reasons))
		}
		// The token verified billing-bot, not the deploy-bot the request
		// names: the row must not call the request's principal verified.
		if ev := rec.Evidence; ev == nil || ev.Principal != "claimed" || ev.Identity == nil || !ev.Identity.Verified {
			t.Errorf("evidence %+v", ev)
		}
	})
	for name, c := range map[string]struct {
		tok, reason, why string
	}{
		"Expired":   {is.Token(t, "billing-bot", -time.Minute, nil), pdp.ReasonTokenInvalid, "expired"},
		"LongLived": {is.Token(t, "billing-bot", 30*24*time.Hour, nil), pdp.ReasonCredentialLongLived, "lifetime"},
		"Forged":    {pdptest.NewIssuer(t).Token(t, "billing-bot", time.Minute, nil), pdp.ReasonTokenInvalid, "signature"},
		"Garbage":   {"not.a.token", pdp.ReasonTokenInvalid, "malformed"},
	} {
		t.Run(name, func(t *testing.T) {
			d, rec := decideLogged(t, e, log, body("billing-bot", c.tok))
			if d.Decision != wire.Deny || reasonIDs(d.Reasons)[0] != c.reason || !strings.HasPrefix(d.Reasons[0].Detail, c.why) {
				t.Errorf("got %s %+v, want deny %s (%s)", d.Decision, d.Reasons, c.reason, c.why)
			}
			if rec.Evidence.Identity == nil || rec.Evidence.Identity.Verified || rec.Evidence.Identity.TokenSHA256 != identity.Thumbprint(c.tok) {
				t.Errorf("evidence %+v", rec.Evidence.Identity)
			}
			// Replay reproduces it from the row: the token is not there.
			snap := e.Snapshot()
			r, err := pdp.Replay(snap, &rec, time.Now())
			if err != nil || r.Decision != d.Decision || reasonIDs(r.Reasons)[0] != c.reason {
				t.Errorf("replay: %+v %v", r, err)
			}
		})
	}
	t.Run("Delegated", func(t *testing.T) {
		dtok := is.Token(t, "alice@example.com", 10*time.Minute, map[string]any{"scope": "invoices:read",
			"act": map[string]any{"sub": "billing-bot", "act": map[string]any{"sub": "orchestrator"}}})
		d, rec := decideLogged(t, e, log, body("billing-bot", dtok))
		if d.Decision != wire.Allow {
			t.Fatalf("got %s %v", d.Decision, d.Reasons)
		}
		if rec.Request.OnBehalfOf != "alice@example.com" || rec.Evidence.OnBehalfOf != "verified" ||
			strings.Join(rec.Evidence.Identity.Actors, ",") != "billing-bot,orchestrator" {
			t.Errorf("delegation: on_behalf_of %q, evidence %+v", rec.Request.OnBehalfOf, rec.Evidence.Identity)
		}
		r, err := pdp.Replay(e.Snapshot(), &rec, time.Now())
		if err != nil || r.Decision != wire.Allow {
			t.Errorf("replay of a verified decision: %+v %v", r, err)
		}
	})
	t.Run("Unverified", func(t *testing.T) {
		d, rec := decideLogged(t, e, log, `{"principal":"Agent::\"billing-bot\"","action":"A::\"x\"","resource":"R::\"r\"","credential":{"scopes":["invoices:read"]}}`)
		if d.Decision != wire.Deny || rec.Evidence.Principal != "claimed" || rec.Evidence.Credential != "claimed" {
			t.Errorf("got %s, evidence %+v", d.Decision, rec.Evidence)
		}
	})
	t.Run("RequireVerified", func(t *testing.T) {
		ev := newEngine(t, files, pdp.Options{Recorder: log, Key: pdptest.TestKey,
			Trust: pdp.TrustOptions{Verifier: is.Verifier(t), Require: identity.RequireVerified}})
		d, _ := decideLogged(t, ev, log, `{"principal":"Agent::\"billing-bot\"","action":"A::\"x\"","resource":"R::\"r\""}`)
		if d.Decision != wire.Deny || reasonIDs(d.Reasons)[0] != pdp.ReasonTokenInvalid {
			t.Errorf("got %s %v", d.Decision, reasonIDs(d.Reasons))
		}
	})
	t.Run("NoIssuerConfigured", func(t *testing.T) {
		plain := newEngine(t, files, pdp.Options{Recorder: log, Key: pdptest.TestKey})
		d, _ := decideLogged(t, plain, log, body("billing-bot", tok))
		if d.Decision != wire.Deny || reasonIDs(d.Reasons)[0] != pdp.ReasonTokenInvalid {
			t.Errorf("got %s %v", d.Decision, reasonIDs(d.Reasons))
		}
	})
}

func u32(v uint32) *uint32 { return &v }

func TestTrust_Callers(t *testing.T) {
	log := openLog(t)
	files := map[string]string{
		"a.entities.json": trustAgents,
		"p.cedar":         `@id("python-only") permit (principal, action, resource) when { context.caller.exe like "/usr/bin/python3*" && context.caller.uid == 1000 };`,
	}
	e := newEngine(t, files, pdp.Options{Recorder: log, Key: pdptest.TestKey, Trust: pdp.TrustOptions{
		Callers: identity.Callers{{UID: u32(1000), Exe: "/usr/bin/python3*", Principals: []string{`Agent::"billing-bot"`}}},
	}})
	py := &wire.Peer{PID: 42, UID: 1000, GID: 1000, Exe: "/usr/bin/python3.12", Cgroup: "/user.slice/session-1.scope"}
	decide := func(body string, peer *wire.Peer) (*wire.Decision, wire.DecisionRecord) {
		t.Helper()
		d, err := e.Decide(t.Context(), mustRequest(t, body), peer)
		if err != nil {
			t.Fatal(err)
		}
		return d, pdptest.Record(t, log, d.DecisionID)
	}
	as := func(p string) string {
		return `{"principal":"Agent::\"` + p + `\"","action":"A::\"x\"","resource":"R::\"r\""}`
	}
	d, rec := decide(as("billing-bot"), py)
	if d.Decision != wire.Allow || rec.Evidence.Principal != "attested" || rec.Evidence.Caller != "attested" || rec.Peer.Cgroup != py.Cgroup {
		t.Errorf("bound caller: got %s %v, evidence %+v", d.Decision, reasonIDs(d.Reasons), rec.Evidence)
	}
	r, err := pdp.Replay(e.Snapshot(), &rec, time.Now())
	if err != nil || r.Decision != wire.Allow {
		t.Errorf("replay with the attested caller: %+v %v", r, err)
	}
	for name, c := range map[string]struct {
		principal string
		peer      *wire.Peer
	}{
		"OtherPrincipal": {"deploy-bot", py},
		"OtherExe":       {"billing-bot", &wire.Peer{UID: 1000, Exe: "/usr/bin/curl"}},
		"NoPeer":         {"billing-bot", nil},
	} {
		d, _ := decide(as(c.principal), c.peer)
		if d.Decision != wire.Deny || reasonIDs(d.Reasons)[0] != pdp.ReasonPrincipalNotBound {
			t.Errorf("%s: got %s %v, want principal_not_bound", name, d.Decision, reasonIDs(d.Reasons))
		}
	}
}

func TestTrust_SharedIdentity(t *testing.T) {
	log := openLog(t)
	e := newEngine(t, map[string]string{"a.entities.json": trustAgents, "p.cedar": `permit (principal, action, resource);`},
		pdp.Options{Recorder: log, Key: pdptest.TestKey})
	body := `{"principal":"Agent::\"billing-bot\"","action":"A::\"x\"","resource":"R::\"r\""}`
	var shared []bool
	for _, peer := range []*wire.Peer{{UID: 1000, Exe: "/usr/bin/python3"}, {UID: 1000, Exe: "/usr/bin/python3"}, {UID: 1000, Exe: "/usr/bin/node"}} {
		d, err := e.Decide(t.Context(), mustRequest(t, body), peer)
		if err != nil {
			t.Fatal(err)
		}
		entry, _ := log.Decision(t.Context(), d.DecisionID)
		var rec wire.DecisionRecord
		json.Unmarshal(entry.Body, &rec)
		shared = append(shared, rec.SharedIdentity)
	}
	if shared[0] || shared[1] || !shared[2] {
		t.Errorf("shared_identity flags %v, want [false false true]", shared)
	}
	if n := e.SharedIdentities(); n != 1 {
		t.Errorf("SharedIdentities() = %d, want 1", n)
	}
}

// TestTrust_EvidenceContext: policies see context.caller as the kernel
// reported this request's caller (the engine keeps the last caller's
// record: a caller differing in any of uid, gid, exe or cgroup gets its
// own), and context.identity as the token verified it, or unverified.
func TestTrust_EvidenceContext(t *testing.T) {
	is := pdptest.NewIssuer(t)
	log := openLog(t)
	files := map[string]string{
		"a.entities.json": trustAgents,
		"p.cedar": `
@id("caller-a") permit (principal, action, resource) when { context.caller == {"uid": 1000, "gid": 100, "exe": "/usr/bin/python3.12", "cgroup": "/a.scope"} };
@id("caller-uid") permit (principal, action, resource) when { context.caller == {"uid": 1001, "gid": 100, "exe": "/usr/bin/python3.12", "cgroup": "/a.scope"} };
@id("caller-gid") permit (principal, action, resource) when { context.caller == {"uid": 1000, "gid": 101, "exe": "/usr/bin/python3.12", "cgroup": "/a.scope"} };
@id("caller-exe") permit (principal, action, resource) when { context.caller == {"uid": 1000, "gid": 100, "exe": "/usr/bin/node", "cgroup": "/a.scope"} };
@id("caller-cgroup") permit (principal, action, resource) when { context.caller == {"uid": 1000, "gid": 100, "exe": "/usr/bin/python3.12", "cgroup": "/b.scope"} };
@id("unverified") permit (principal, action, resource) when { context.identity == {"verified": false, "issuer": "", "subject": "", "spiffe_id": "", "scopes": [], "actors": []} };
@id("verified") permit (principal, action, resource) when { context.identity.verified && context.identity.subject == "billing-bot" && context.identity.scopes == ["invoices:read"] };
@id("args") permit (principal, action, resource) when { context.args == {"n": 1} };
`,
	}
	e := newEngine(t, files, pdp.Options{Recorder: log, Key: pdptest.TestKey, Trust: pdp.TrustOptions{Verifier: is.Verifier(t)}})
	tok := is.Token(t, "billing-bot", 10*time.Minute, map[string]any{"scope": "invoices:read"})
	a := wire.Peer{PID: 7, UID: 1000, GID: 100, Exe: "/usr/bin/python3.12", Cgroup: "/a.scope"}
	with := func(f func(p *wire.Peer)) *wire.Peer { p := a; f(&p); return &p }
	for _, c := range []struct {
		name   string
		peer   *wire.Peer
		token  string
		policy []string
	}{
		{"A", &a, "", []string{"args", "caller-a", "unverified"}},
		{"UID", with(func(p *wire.Peer) { p.UID = 1001 }), "", []string{"args", "caller-uid", "unverified"}},
		{"A again", &a, "", []string{"args", "caller-a", "unverified"}},
		{"GID", with(func(p *wire.Peer) { p.GID = 101 }), "", []string{"args", "caller-gid", "unverified"}},
		{"Exe", with(func(p *wire.Peer) { p.Exe = "/usr/bin/node" }), "", []string{"args", "caller-exe", "unverified"}},
		{"Cgroup", with(func(p *wire.Peer) { p.Cgroup = "/b.scope" }), "", []string{"args", "caller-cgroup", "unverified"}},
		{"OtherPID", with(func(p *wire.Peer) { p.PID = 8 }), "", []string{"args", "caller-a", "unverified"}},
		{"Verified", &a, tok, []string{"args", "caller-a", "verified"}},
		{"NoPeer", nil, "", []string{"args", "unverified"}},
		{"NoPeerVerified", nil, tok, []string{"args", "verified"}},
	} {
		body := `{"principal":"Agent::\"billing-bot\"","action":"A::\"x\"","resource":"R::\"r\"","context":{"args":{"n":1}},"token":"` + c.token + `"}`
		d, err := e.Decide(t.Context(), mustRequest(t, body), c.peer)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(reasonIDs(d.Reasons), ","); d.Decision != wire.Allow || got != strings.Join(c.policy, ",") {
			t.Errorf("%s: got %s %s, want allow by %v", c.name, d.Decision, got, c.policy)
		}
	}
}

// TestTrust_EvidenceContextConcurrent: callers deciding at once each see
// their own context.caller, whichever caller's record the engine keeps.
func TestTrust_EvidenceContextConcurrent(t *testing.T) {
	log := openLog(t)
	e := newEngine(t, map[string]string{"a.entities.json": trustAgents,
		"p.cedar": `@id("low-uids") permit (principal, action, resource) when { context.caller.uid < 1004 && context.caller.exe == "/bin/x" };`},
		pdp.Options{Recorder: log, Key: pdptest.TestKey, Trust: pdp.TrustOptions{SharedWindow: -1}})
	body := `{"principal":"Agent::\"billing-bot\"","action":"A::\"x\"","resource":"R::\"r\""}`
	var wg sync.WaitGroup
	for uid := uint32(1000); uid < 1008; uid++ {
		wg.Go(func() {
			peer := &wire.Peer{UID: uid, GID: 100, Exe: "/bin/x", Cgroup: "/c"}
			want := wire.Deny
			if uid < 1004 {
				want = wire.Allow
			}
			for range 20 {
				req, err := wire.DecodeRequest([]byte(body))
				if err != nil {
					t.Error(err)
					return
				}
				d, err := e.Decide(t.Context(), req, peer)
				if err != nil {
					t.Error(err)
					return
				}
				if d.Decision != want {
					t.Errorf("uid %d: got %s, want %s", uid, d.Decision, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestTrust_EscapedContextKeys: a policy that spells caller or identity
// with escapes still gets them (the engine builds them for any policy
// that may read them), rather than an evaluation error.
func TestTrust_EscapedContextKeys(t *testing.T) {
	e := newEngine(t, map[string]string{"a.entities.json": trustAgents,
		"p.cedar": `@id("escaped") permit (principal, action, resource) when { context["c\u{61}ller"]["uid"] == 1000 && context["\u{69}dentity"]["verified"] == false };`},
		pdp.Options{Recorder: openLog(t), Key: pdptest.TestKey})
	body := `{"principal":"Agent::\"billing-bot\"","action":"A::\"x\"","resource":"R::\"r\""}`
	for uid, want := range map[uint32]wire.Verdict{1000: wire.Allow, 1001: wire.Deny} {
		d, err := e.Decide(t.Context(), mustRequest(t, body), &wire.Peer{UID: uid, GID: 100, Exe: "/bin/x"})
		if err != nil {
			t.Fatal(err)
		}
		if d.Decision != want || len(d.Errors) > 0 {
			t.Errorf("uid %d: got %s (errors %v), want %s and no errors", uid, d.Decision, d.Errors, want)
		}
	}
}

// A token the daemon verifies is recorded by the thumbprint an auditor
// holding it computes: the SHA-256 of the token itself. Verify reads a
// token sent with surrounding white space (a token file's newline, in the
// body's token field) as the token, so the row's thumbprint must be of
// the same bytes, or a search by the token's thumbprint misses the row.
func TestTrust_TokenThumbprintIgnoresSurroundingSpace(t *testing.T) {
	is := pdptest.NewIssuer(t)
	log := openLog(t)
	files := map[string]string{
		"a.entities.json": trustAgents,
		"p.cedar":         `permit (principal, action, resource) when { context.identity.verified };`,
	}
	e := newEngine(t, files, pdp.Options{Recorder: log, Key: pdptest.TestKey, Trust: pdp.TrustOptions{Verifier: is.Verifier(t)}})
	tok := is.Token(t, "billing-bot", 10*time.Minute, nil)
	for name, sent := range map[string]string{"Newline": tok + `\n`, "CRLF": tok + `\r\n`, "Spaces": `  ` + tok + ` `, "Tab": `\t` + tok} {
		t.Run(name, func(t *testing.T) {
			d, rec := decideLogged(t, e, log, `{"principal":"Agent::\"billing-bot\"","action":"A::\"x\"","resource":"R::\"r\"","token":"`+sent+`"}`)
			if d.Decision != wire.Allow {
				t.Fatalf("got %s %v", d.Decision, d.Reasons)
			}
			if got, want := rec.Evidence.Identity.TokenSHA256, identity.Thumbprint(tok); got != want {
				t.Errorf("the row's token thumbprint is %s; the token's is %s", got, want)
			}
		})
	}
}

// A policy that reads the context whole (compares it, puts it in a set)
// sees context.identity and context.caller as every policy does: whether
// the engine builds them must not depend on some other file naming them,
// even in a comment. Mentions once only looked for the words, so the first
// engine allowed what the second, which differs by a comment, denied.
func TestTrust_WholeContextSeesEvidence(t *testing.T) {
	body := `{"principal":"Agent::\"billing-bot\"","action":"A::\"x\"","resource":"R::\"r\"","context":{"a":1}}`
	for _, p := range []string{
		`permit (principal, action, resource) when { context == {"a": 1} };`,
		`permit (principal, action, resource) when { [{"a": 1}].contains(context) };`,
		`permit (principal, action, resource) unless { context != {"a": 1} };`,
	} {
		var got []wire.Verdict
		for _, files := range []map[string]string{
			{"a.entities.json": trustAgents, "p.cedar": p},
			{"a.entities.json": trustAgents, "p.cedar": p, "q.cedar": "// context.caller is the kernel's word\n"},
		} {
			e := newEngine(t, files, pdp.Options{Recorder: openLog(t), Key: pdptest.TestKey})
			d, err := e.Decide(t.Context(), mustRequest(t, body), &wire.Peer{UID: 1000, GID: 100, Exe: "/bin/x"})
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, d.Decision)
		}
		if got[0] != wire.Deny || got[1] != wire.Deny {
			t.Errorf("%s: got %s alone and %s beside a comment naming context.caller; want deny for both (the context holds identity and caller)", p, got[0], got[1])
		}
	}
}

// The credential a verified token gives replaces the request's in the
// logged request, after prepare masked it: the operator's masks of
// /credential/… and /on_behalf_of hold for it too. A token's jti is
// recorded nowhere else, so a mask of /credential/id that let it through
// put in the log exactly what the operator kept out of it.
func TestTrust_VerifiedCredentialIsMasked(t *testing.T) {
	is := pdptest.NewIssuer(t)
	log := openLog(t)
	files := map[string]string{
		"a.entities.json": trustAgents,
		"p.cedar":         `permit (principal, action, resource) when { context.identity.verified && context.identity.scopes.contains("invoices:read") };`,
	}
	e := newEngine(t, files, pdp.Options{Recorder: log, Key: pdptest.TestKey,
		Mask:  []string{"/credential/id", "/credential/issuer", "/credential/scopes/*", "/on_behalf_of"},
		Trust: pdp.TrustOptions{Verifier: is.Verifier(t)}})
	tok := is.Token(t, "alice@example.com", 10*time.Minute, map[string]any{"scope": "invoices:read", "act": map[string]any{"sub": "billing-bot"}})
	body := `{"principal":"Agent::\"billing-bot\"","action":"A::\"x\"","resource":"R::\"r\"","token":"` + tok + `"}`
	d, rec := decideLogged(t, e, log, body)
	if d.Decision != wire.Allow {
		t.Fatalf("got %s %v", d.Decision, d.Reasons)
	}
	// The token's scopes are masked in the row, not in the identity the
	// token cache holds: the token used again still carries them.
	if again, _ := decideLogged(t, e, log, body); again.Decision != wire.Allow {
		t.Fatalf("the same token again: got %s %v", again.Decision, again.Reasons)
	}
	c := rec.Request.Credential
	if c == nil {
		t.Fatal("no credential logged")
	}
	if !strings.HasPrefix(c.ID, "hmac-sha256:") || !strings.HasPrefix(c.Issuer, "hmac-sha256:") {
		t.Errorf("logged credential id %q issuer %q, want their masks", c.ID, c.Issuer)
	}
	if len(c.Scopes) != 1 || !strings.HasPrefix(c.Scopes[0], "hmac-sha256:") {
		t.Errorf("logged credential scopes %q, want their masks", c.Scopes)
	}
	if c.Subject != "alice@example.com" {
		t.Errorf("logged credential subject %q: masked though no mask names it", c.Subject)
	}
	if !strings.HasPrefix(rec.Request.OnBehalfOf, "hmac-sha256:") {
		t.Errorf("logged on_behalf_of %q, want its mask", rec.Request.OnBehalfOf)
	}
	for _, ptr := range []string{"/credential/id", "/credential/issuer", "/credential/scopes/*", "/on_behalf_of"} {
		if !slices.Contains(rec.Masked, ptr) {
			t.Errorf("the row's masked %v does not name %s", rec.Masked, ptr)
		}
	}
	entry, err := log.Decision(t.Context(), d.DecisionID)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(entry.Body), "jti-alice@example.com") {
		t.Error("the token's jti reached the log under a mask of /credential/id")
	}
}
