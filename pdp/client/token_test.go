package client_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// tokenPolicies allow only a verified agent; both agents are known.
var tokenPolicies = map[string]string{
	"agents.entities.json": `[{"uid":{"type":"Agent","id":"billing-bot"},"attrs":{},"parents":[]},{"uid":{"type":"Agent","id":"deploy-bot"},"attrs":{},"parents":[]}]`,
	"p.cedar":              `@id("verified-only") permit (principal, action, resource) when { context.identity.verified };`,
}

// A token from TokenFile reaches the daemon as Authorization: Bearer: the
// decision is made as the verified principal and the row says so; a
// rewritten file is followed; a bad token is deny token_invalid; a token
// the client cannot read stops the request before anything is decided.
func TestClient_TokenFile(t *testing.T) {
	is := pdptest.NewIssuer(t)
	d := pdptest.ServeWith(t, tokenPolicies, decisionlog.DurabilityFull, func(o *pdp.Options) {
		o.Trust.Verifier = is.Verifier(t)
	})
	file := filepath.Join(t.TempDir(), "svid.jwt")
	write := func(tok string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	req := func(agent string) *wire.Request { return pdptest.Request(agent) }
	c := client.New(d.Sock).WithToken(client.TokenFile(file))
	defer c.Close()

	tok := is.Token(t, "billing-bot", 10*time.Minute, nil)
	write(tok)
	dec, err := c.Authorize(t.Context(), req("billing-bot"))
	if err != nil || dec.Decision != wire.Allow {
		t.Fatalf("verified billing-bot: %+v %v", dec, err)
	}
	rec := pdptest.Record(t, d.Log, dec.DecisionID)
	if ev := rec.Evidence; ev == nil || ev.Principal != "verified" || ev.Identity == nil || !ev.Identity.Verified || ev.Identity.Subject != "billing-bot" {
		t.Errorf("evidence %+v", rec.Evidence)
	}

	// The helper rewrites the file with a fresh SVID for another workload.
	time.Sleep(10 * time.Millisecond) // a later modification time on coarse clocks
	write(is.Token(t, "deploy-bot", 10*time.Minute, nil))
	dec, err = c.Authorize(t.Context(), req("deploy-bot"))
	if err != nil || dec.Decision != wire.Allow {
		t.Fatalf("after the file was rewritten: %+v %v", dec, err)
	}
	if rec := pdptest.Record(t, d.Log, dec.DecisionID); rec.Evidence.Identity.Subject != "deploy-bot" {
		t.Errorf("the old token was sent: %+v", rec.Evidence.Identity)
	}

	// Without a token the same request is the agent's claim: denied.
	dec, err = client.New(d.Sock).Authorize(t.Context(), req("deploy-bot"))
	if err != nil || dec.Decision != wire.Deny {
		t.Errorf("no token: %+v %v", dec, err)
	}

	expired := is.Token(t, "billing-bot", -time.Minute, nil)
	dec, err = client.New(d.Sock).WithToken(client.StaticToken(expired)).Authorize(t.Context(), req("billing-bot"))
	if err != nil || dec.Decision != wire.Deny || dec.Reasons[0].Policy != pdp.ReasonTokenInvalid || !strings.HasPrefix(dec.Reasons[0].Detail, "expired") {
		t.Errorf("expired token: %+v %v", dec, err)
	}

	last := dec.Seq
	for name, src := range map[string]client.TokenSource{
		"missing file": client.TokenFile(filepath.Join(t.TempDir(), "nothing")),
		"two words":    client.StaticToken("abc def"),
		"with Bearer":  client.StaticToken("Bearer " + tok),
		"newline":      client.StaticToken(tok + "\r\nX-Injected: 1"),
		"empty":        client.StaticToken(""),
	} {
		_, err := client.New(d.Sock).WithToken(src).Authorize(t.Context(), req("billing-bot"))
		var status *client.Error
		if err == nil || errors.As(err, &status) || !strings.Contains(err.Error(), "token") {
			t.Errorf("%s: got %v, want an error of the client's before anything is sent", name, err)
		}
		if strings.Contains(err.Error(), tok) {
			t.Errorf("%s: the error quotes the token: %v", name, err)
		}
	}
	write(tok)
	dec, err = c.Authorize(t.Context(), req("billing-bot"))
	if err != nil || dec.Seq != last+1 {
		t.Errorf("rows were written for requests never sent: seq %d after %d (%v)", dec.Seq, last, err)
	}
}
