package pdp_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// fakeGitHubToken is shaped like a GitHub token; built at run time so that
// the source holds nothing a secret scanner flags.
func fakeGitHubToken() string { return "gh" + "p_" + strings.Repeat("a1B2c3", 6) }

// Secrets beyond raw tokens (issue 11): a base64-wrapped credential or a
// well-known prefixed secret is refused with 400 naming its place, in the
// request, an outcome's detail or an approval's comment, unless the mask
// config names that place: then the policies see it and the log holds its
// mask.
func TestSecrets_RefusedUnlessMasked(t *testing.T) {
	policies := map[string]string{"p.cedar": `@id("all") permit (principal, action, resource);`}
	plain := pdptest.Serve(t, policies)
	masked := pdptest.ServeWith(t, policies, decisionlog.DurabilityFull, func(o *pdp.Options) {
		o.Mask = []string{"/context/args/token", "/entities/*/attrs/api_key"}
	})
	ghp := fakeGitHubToken()
	basic := base64.StdEncoding.EncodeToString([]byte("token:secret-" + strings.Repeat("x9", 6)))
	req := func(ctx string, ents ...wire.Entity) *wire.Request {
		r := pdptest.Request("a")
		r.Context = json.RawMessage(ctx)
		r.Entities = ents
		return r
	}
	want400 := func(t *testing.T, c *client.Client, r *wire.Request, field string) {
		t.Helper()
		_, err := c.Authorize(t.Context(), r)
		if !client.IsStatus(err, http.StatusBadRequest) || !strings.Contains(err.Error(), field) || !strings.Contains(err.Error(), "secret") {
			t.Errorf("want 400 naming %s: %v", field, err)
		}
		if err != nil && (strings.Contains(err.Error(), ghp) || strings.Contains(err.Error(), basic)) {
			t.Errorf("the error quotes the secret: %v", err)
		}
	}
	want400(t, plain.Agent, req(`{"args":{"token":"`+ghp+`"}}`), "/context/args/token")
	want400(t, plain.Agent, req(`{"args":{"auth":"`+basic+`"}}`), "/context/args/auth")
	want400(t, masked.Agent, req(`{"args":{"token":"`+ghp+`","auth":"`+basic+`"}}`), "/context/args/auth")
	r := pdptest.Request("a")
	r.SessionID = "s-" + basic
	want400(t, masked.Agent, r, "/session_id")
	want400(t, masked.Agent, req(`{}`, wire.Entity{UID: pdptest.Ref(`Key::"k"`), Attrs: json.RawMessage(`{"note":"` + ghp + `"}`)}), "/entities/0/attrs/note")

	// At a masked place: decided, and stored as its mask.
	dec, err := masked.Agent.Authorize(t.Context(), req(`{"args":{"token":"`+ghp+`","n":1}}`,
		wire.Entity{UID: pdptest.Ref(`Key::"k"`), Attrs: json.RawMessage(`{"api_key":"` + basic + `"}`)}))
	if err != nil || dec.Decision != wire.Allow {
		t.Fatalf("a secret at a masked place: %+v %v", dec, err)
	}
	rec := pdptest.Record(t, masked.Log, dec.DecisionID)
	if !strings.Contains(string(rec.Request.Context), `"token":"hmac-sha256:`) || !strings.Contains(string(rec.Request.Entities[0].Attrs), `"api_key":"hmac-sha256:`) {
		t.Errorf("masked row: context %s, attrs %s", rec.Request.Context, rec.Request.Entities[0].Attrs)
	}

	// Outcomes and approvals are stored too.
	ok, err := plain.Agent.Authorize(t.Context(), pdptest.Request("a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Agent.Outcome(t.Context(), ok.DecisionID, "error", map[string]any{"curl": "curl -H 'Authorization: Basic " + basic + "'"}); !client.IsStatus(err, http.StatusBadRequest) || !strings.Contains(err.Error(), "/detail/curl") {
		t.Errorf("outcome detail with Basic credentials: %v", err)
	}

	masked.Stop()
	for _, f := range []string{"d.db", "d.db-wal"} {
		b, _ := os.ReadFile(filepath.Join(masked.Dir, f))
		if bytes.Contains(b, []byte(ghp)) || bytes.Contains(b, []byte(basic)) {
			t.Errorf("%s holds a secret", f)
		}
	}
}
