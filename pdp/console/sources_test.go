package console_test

import (
	"encoding/json"
	"html"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// deployScope is the scope of the tokens the console's tests verify.
var deployScope = map[string]any{"scope": "deploy"}

var factRowRE = regexp.MustCompile(`<tr><th scope="row">([^<]*)</th><td>([^<]*)</td><td><span class="source">([^<]*)</span></td></tr>`)

// sources maps each fact name in a page's facts tables to its sources, in
// order, each as "value | source".
func sources(page string) map[string][]string {
	out := map[string][]string{}
	for _, m := range factRowRE.FindAllStringSubmatch(page, -1) {
		name := html.UnescapeString(m[1])
		out[name] = append(out[name], html.UnescapeString(m[2])+" | "+html.UnescapeString(m[3]))
	}
	return out
}

func wantSource(t *testing.T, where string, got map[string][]string, name, source string) {
	t.Helper()
	for _, s := range got[name] {
		if strings.HasSuffix(s, " | "+source) {
			return
		}
	}
	t.Errorf("%s: fact %q has sources %q, want %q (all: %v)", where, name, got[name], source, got)
}

// The decision page and the waiting cards show the source the row records
// for each fact, not the console's reading of the request: a verified JWT
// makes the principal verified, a refused one leaves it claimed; a row
// written before the row recorded sources says so and keeps the old labels.
func TestConsole_ShowsTheSourcesTheRowRecords(t *testing.T) {
	is := pdptest.NewIssuer(t)
	f := newFixtureWith(t, func(o *pdp.Options) { o.Trust.Verifier = is.Verifier(t) })
	c := f.browser()
	f.signIn(c, "alice", "alice password 1")

	ask := func(token string) *wire.Decision {
		t.Helper()
		req := &wire.Request{Principal: ref(`Agent::"deploy-bot"`), Action: ref(`Action::"invoke_tool"`), Resource: ref(`Tool::"k8s.apply"`),
			Context: json.RawMessage(`{"replicas":3}`), Token: token}
		d, err := f.agent.Authorize(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	verified := ask(is.Token(t, "deploy-bot", 10*time.Minute, deployScope))
	if verified.Decision != wire.StepUp {
		t.Fatalf("verified token: got %s %v, want step_up", verified.Decision, verified.Reasons)
	}
	_, page := f.get(c, "/decisions/"+verified.DecisionID)
	got := sources(page)
	wantSource(t, "verified", got, "principal", "verified")
	wantSource(t, "verified", got, "credential", "verified")
	wantSource(t, "verified", got, "token", "verified")
	wantSource(t, "verified", got, "caller", "attested")
	wantSource(t, "verified", got, "context", "claimed")
	if strings.Contains(page, "written before decisions recorded") {
		t.Error("a row with evidence is called old")
	}
	// The waiting card of the same step-up says the same.
	_, page = f.get(c, "/approvals")
	card := page[strings.Index(page, `id="p-`+verified.DecisionID+`"`):]
	card = card[:strings.Index(card, "</li>")]
	got = sources(card)
	wantSource(t, "waiting card", got, "principal", "verified")
	wantSource(t, "waiting card", got, "token", "verified")

	forged := ask(pdptest.NewIssuer(t).Token(t, "deploy-bot", 10*time.Minute, deployScope))
	if forged.Decision != wire.Deny {
		t.Fatalf("forged token: got %s, want deny", forged.Decision)
	}
	_, page = f.get(c, "/decisions/"+forged.DecisionID)
	got = sources(page)
	wantSource(t, "unverified", got, "principal", "claimed")
	wantSource(t, "unverified", got, "token", "claimed")
	if s := got["token"]; len(s) != 1 || !strings.HasPrefix(s[0], "refused: ") {
		t.Errorf("unverified token row %q, want refused: with the reason", s)
	}
	for _, s := range got["principal"] {
		if strings.HasSuffix(s, "verified") {
			t.Errorf("a refused token made the principal %q", s)
		}
	}

	// A row as daemons wrote it before the trust boundary: no evidence.
	old := `{"decision_id":"old-1","decision":"allow","principal":"Agent::\"a\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"t\"",` +
		`"reasons":[],"errors":[],"policy_version":"v0","peer":{"pid":7,"uid":1000,"gid":1000,"exe":"/usr/bin/python3"},` +
		`"request":{"principal":"Agent::\"a\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"t\"","context":{}},"eval_ns":1}`
	if err := f.daemon.Log.Append(t.Context(), &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: json.RawMessage(old)}); err != nil {
		t.Fatal(err)
	}
	_, page = f.get(c, "/decisions/old-1")
	got = sources(page)
	wantSource(t, "old row", got, "principal", "claimed (request)")
	wantSource(t, "old row", got, "caller", "attested (kernel, SO_PEERCRED)")
	if !strings.Contains(page, "written before decisions recorded") {
		t.Error("an old row's sources are not marked as the console's reading")
	}
}
