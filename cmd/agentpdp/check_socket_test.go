package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// check --socket asks a real daemon with a JWT issuer configured: with
// --token-file or --token-env the decision is made as the verified
// principal (the default pack lets a verified deploy:production scope stand
// in for the production approval) and the row says verified; a bad token
// is deny token_invalid; a token on the command line is refused.
func TestCLI_CheckSocketToken(t *testing.T) {
	d := newDaemonDir(t)
	is := pdptest.NewIssuer(t)
	appendConfig(t, d, is.YAML())
	d.start()
	tok := is.Token(t, "deploy-bot", 10*time.Minute, map[string]any{"scope": "deploy:production"})
	dir := t.TempDir()
	valid, expired := filepath.Join(dir, "valid.jwt"), filepath.Join(dir, "expired.jwt")
	os.WriteFile(valid, []byte(tok+"\n"), 0o600)
	os.WriteFile(expired, []byte(is.Token(t, "deploy-bot", -time.Minute, nil)), 0o600)
	const apply = `{"principal":"Agent::\"deploy-bot\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"k8s.apply\""}`
	admin := client.New(d.asock())
	defer admin.Close()
	decided := func(t *testing.T, args ...string) (wire.Decision, map[string]any) {
		t.Helper()
		code, out, errOut := runCLI(t, append([]string{"check", "--socket", d.sock(), "--request", apply}, args...)...)
		var dec wire.Decision
		if code != 0 || json.Unmarshal([]byte(out), &dec) != nil || dec.DecisionID == "" {
			t.Fatalf("check %v: exit %d\n%s%s", args, code, out, errOut)
		}
		var row map[string]any
		if err := admin.Do(t.Context(), http.MethodGet, "/v1/decisions/"+dec.DecisionID, nil, &row); err != nil {
			t.Fatal(err)
		}
		return dec, row
	}
	principalSource := func(row map[string]any) any { return row["evidence"].(map[string]any)["principal"] }

	t.Run("TokenFile", func(t *testing.T) {
		dec, row := decided(t, "--token-file", valid)
		if dec.Decision != wire.Allow || principalSource(row) != "verified" {
			t.Errorf("got %s, evidence %v", dec.Decision, row["evidence"])
		}
		if b, _ := json.Marshal(row); strings.Contains(string(b), tok) {
			t.Error("the token reached the row")
		}
	})
	t.Run("TokenEnv", func(t *testing.T) {
		t.Setenv("APDP_TEST_TOKEN", tok)
		dec, row := decided(t, "--token-env", "APDP_TEST_TOKEN")
		if dec.Decision != wire.Allow || principalSource(row) != "verified" {
			t.Errorf("got %s, evidence %v", dec.Decision, row["evidence"])
		}
	})
	t.Run("NoToken", func(t *testing.T) {
		dec, row := decided(t)
		if dec.Decision != wire.StepUp || principalSource(row) != "claimed" {
			t.Errorf("got %s, evidence %v", dec.Decision, row["evidence"])
		}
	})
	t.Run("Expired", func(t *testing.T) {
		dec, _ := decided(t, "--token-file", expired)
		if dec.Decision != wire.Deny || dec.Reasons[0].Policy != "token_invalid" || !strings.HasPrefix(dec.Reasons[0].Detail, "expired") {
			t.Errorf("got %s %+v", dec.Decision, dec.Reasons)
		}
	})
	t.Run("RequestsFileBadLine", func(t *testing.T) {
		reqs := filepath.Join(dir, "reqs.jsonl")
		os.WriteFile(reqs, []byte(apply+"\n"+`{"principal":"Agent::deploy-bot"}`+"\n"+`{`+"\n"+apply+"\n"), 0o644)
		code, out, _ := runCLI(t, "check", "--socket", d.sock(), "--token-file", valid, "--requests", reqs)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != exitFail || len(lines) != 4 || !strings.Contains(lines[0], `"allow"`) || !strings.Contains(lines[1], `"line":2`) ||
			!strings.Contains(lines[1], "principal") || !strings.Contains(lines[2], `"line":3`) || !strings.Contains(lines[3], `"allow"`) {
			t.Errorf("exit %d:\n%s", code, out)
		}
	})
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"TokenOnCommandLine": {[]string{"--socket", d.sock(), "--token", tok}, "ps"},
		"TokenWithoutSocket": {[]string{"--token-file", valid}, "--socket"},
		"BothTokens":         {[]string{"--socket", d.sock(), "--token-file", valid, "--token-env", "X"}, "at most one"},
		"EmptyEnv":           {[]string{"--socket", d.sock(), "--token-env", "APDP_TEST_NOTHING"}, "unset or empty"},
		"MissingFile":        {[]string{"--socket", d.sock(), "--token-file", filepath.Join(dir, "none")}, "no such file"},
		"InProcessFlag":      {[]string{"--socket", d.sock(), "--schema", "x.cedarschema"}, "--schema"},
	} {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := runCLI(t, append([]string{"check", "--request", apply}, c.args...)...)
			if code != exitUsage || !strings.Contains(errOut, c.want) || out != "" {
				t.Errorf("exit %d, stderr %q, want usage error with %q", code, errOut, c.want)
			}
			if strings.Contains(errOut, tok) {
				t.Error("the token was echoed")
			}
		})
	}
	t.Run("DaemonGone", func(t *testing.T) {
		code, _, errOut := runCLI(t, "check", "--socket", filepath.Join(dir, "none.sock"), "--request", apply)
		if code != exitFail || !strings.Contains(errOut, "none.sock") {
			t.Errorf("exit %d: %s", code, errOut)
		}
	})
}
