package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/server"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

func TestServer_ConcurrentClientsAllLogged(t *testing.T) {
	d := pdptest.Serve(t, map[string]string{"p.cedar": pdptest.AgentPolicies})
	const clients, each = 16, 40
	type answer struct {
		id  string
		seq int64
		dec string
	}
	answers := make(chan answer, clients*each)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			cl := client.New(d.Sock) // a connection pool per client
			defer cl.Close()
			for i := range each {
				who := fmt.Sprintf("agent-%d", c)
				if i%4 == 0 {
					who = "mallory"
				}
				dec, err := cl.Authorize(t.Context(), pdptest.Request(who))
				if err != nil {
					t.Error(err)
					return
				}
				answers <- answer{dec.DecisionID, dec.Seq, string(dec.Decision)}
			}
		})
	}
	wg.Wait()
	close(answers)
	n := 0
	for a := range answers {
		n++
		entry, err := d.Log.Decision(t.Context(), a.id)
		if err != nil {
			t.Fatalf("answered decision %s is not in the log: %v", a.id, err)
		}
		var rec wire.DecisionRecord
		if err := json.Unmarshal(entry.Body, &rec); err != nil {
			t.Fatal(err)
		}
		if entry.Seq != a.seq || rec.Decision != wire.Verdict(a.dec) {
			t.Errorf("%s: answered seq %d %s, logged seq %d %s", a.id, a.seq, a.dec, entry.Seq, rec.Decision)
		}
	}
	if n != clients*each {
		t.Errorf("%d answers", n)
	}
}

func TestServer_PeerCredentials(t *testing.T) {
	d := pdptest.Serve(t, map[string]string{"p.cedar": pdptest.AgentPolicies})
	dec, err := d.Agent.Authorize(t.Context(), pdptest.Request("a"))
	if err != nil {
		t.Fatal(err)
	}
	entry, err := d.Log.Decision(t.Context(), dec.DecisionID)
	if err != nil {
		t.Fatal(err)
	}
	var rec wire.DecisionRecord
	if err := json.Unmarshal(entry.Body, &rec); err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	if rec.Peer == nil || int(rec.Peer.PID) != os.Getpid() || int(rec.Peer.UID) != os.Getuid() || int(rec.Peer.GID) != os.Getgid() || rec.Peer.Exe != exe {
		t.Errorf("peer: got %+v, want pid %d uid %d exe %s", rec.Peer, os.Getpid(), os.Getuid(), exe)
	}
}

func TestServer_BatchKeepsOrder(t *testing.T) {
	d := pdptest.Serve(t, map[string]string{"p.cedar": pdptest.AgentPolicies})
	reqs := []*wire.Request{pdptest.Request("a"), pdptest.Request("mallory"), pdptest.Request("b"), pdptest.Request("mallory")}
	ds, err := d.Agent.AuthorizeBatch(t.Context(), reqs)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{string(wire.Allow), string(wire.Deny), string(wire.Allow), string(wire.Deny)}
	for i, dec := range ds {
		if dec.Decision != wire.Verdict(want[i]) {
			t.Errorf("decision %d: got %s, want %s", i, dec.Decision, want[i])
		}
		if i > 0 && dec.Seq != ds[i-1].Seq+1 {
			t.Errorf("batch not logged in order: seqs %d then %d", ds[i-1].Seq, dec.Seq)
		}
	}
}

func TestServer_SocketsAreSeparate(t *testing.T) {
	d := pdptest.Serve(t, map[string]string{"p.cedar": pdptest.AgentPolicies})
	for _, s := range []struct {
		path string
		mode os.FileMode
	}{{d.Sock, 0o660}, {d.Asock, 0o600}} {
		st, err := os.Stat(s.path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != s.mode {
			t.Errorf("%s: mode %#o, want %#o", s.path, st.Mode().Perm(), s.mode)
		}
	}
	dec, err := d.Agent.Authorize(t.Context(), pdptest.Request("a"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/v1/status", "/v1/decisions", "/v1/decisions/" + dec.DecisionID} {
		if err := d.Agent.Do(t.Context(), http.MethodGet, path, nil, nil); !client.IsStatus(err, http.StatusNotFound) {
			t.Errorf("decision socket serves %s: %v", path, err)
		}
	}
	if err := d.Agent.Do(t.Context(), http.MethodPost, "/v1/reload", nil, nil); !client.IsStatus(err, http.StatusNotFound) {
		t.Errorf("decision socket serves reload: %v", err)
	}

	var one map[string]any
	if err := d.Admin.Do(t.Context(), http.MethodGet, "/v1/decisions/"+dec.DecisionID, nil, &one); err != nil {
		t.Fatal(err)
	}
	if one["decision_id"] != dec.DecisionID || one["seq"] != float64(dec.Seq) {
		t.Errorf("admin get: %v", one)
	}
	var list struct {
		Decisions []map[string]any `json:"decisions"`
	}
	if err := d.Admin.Do(t.Context(), http.MethodGet, "/v1/decisions?principal=a&limit=5", nil, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Decisions) != 1 || list.Decisions[0]["decision_id"] != dec.DecisionID {
		t.Errorf("admin query: %v", list)
	}
	if err := d.Admin.Do(t.Context(), http.MethodGet, "/v1/decisions?limt=5", nil, nil); !client.IsStatus(err, http.StatusBadRequest) {
		t.Errorf("unknown query parameter: %v", err)
	}
	if err := d.Admin.Do(t.Context(), http.MethodGet, "/v1/decisions/nope", nil, nil); !client.IsStatus(err, http.StatusNotFound) {
		t.Errorf("unknown id: %v", err)
	}
	var status struct {
		Policies pdp.ReloadStatus  `json:"policies"`
		Log      decisionlog.Stats `json:"log"`
	}
	if err := d.Admin.Do(t.Context(), http.MethodGet, "/v1/status", nil, &status); err != nil {
		t.Fatal(err)
	}
	if status.Policies.PolicyVersion != dec.PolicyVersion || status.Log.LastSeq != dec.Seq {
		t.Errorf("status: %+v", status)
	}
	if v, err := d.Agent.Health(t.Context()); err != nil || v != dec.PolicyVersion {
		t.Errorf("health: %s %v", v, err)
	}
}

func TestServer_BadInput(t *testing.T) {
	d := pdptest.Serve(t, map[string]string{"p.cedar": pdptest.AgentPolicies})
	post := func(body string) (int, string) {
		hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", d.Sock)
		}}}
		resp, err := hc.Post("http://x/v1/authorize", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		msg, _ := out["error"].(string)
		return resp.StatusCode, msg
	}
	tests := []struct{ name, body, says string }{
		{"Malformed", `{"principal":`, "malformed"},
		{"WrongType", `{"principal":"Agent::\"a\"","action":"Action::\"x\"","resource":"Tool::\"t\"","task_id":7}`, "task_id"},
		{"BadEntityRef", `{"principal":"Agent::a","action":"Action::\"x\"","resource":"Tool::\"t\""}`, "principal"},
		{"OversizeWithoutPrincipal", `{"action":"Action::\"x\"","resource":"Tool::\"t\"","context":{"pad":"` + strings.Repeat("x", 70<<10) + `"}}`, "exceeds"},
		{"BadEscape", `{"principal":"Agent::\"a\"","action":"Action::\"x\"","resource":"Tool::\"t\"","context":{"ip":{"__extn":{"fn":"ip","arg":"nope"}}}}`, "/context/ip"},
		// Issue 11: one strict reading.
		{"NameCase", `{"principal":"Agent::\"mallory\"","PRINCIPAL":"Agent::\"a\"","action":"Action::\"x\"","resource":"Tool::\"t\""}`, "/PRINCIPAL: unknown field"},
		{"DuplicateName", `{"principal":"Agent::\"a\"","action":"Action::\"x\"","resource":"Tool::\"t\"","context":{"ticket":"nope","ticket":"INC-42"}}`, "/context/ticket: duplicate name"},
		{"InvalidUTF8", `{"principal":"Agent::\"a\"","action":"Action::\"x\"","resource":"Tool::\"t\"","context":{"env":"staging` + "\xff" + `"}}`, "/context/env: invalid UTF-8"},
		{"TooDeep", `{"principal":"Agent::\"a\"","action":"Action::\"x\"","resource":"Tool::\"t\"","context":` + strings.Repeat(`{"a":`, 1000) + `1` + strings.Repeat(`}`, 1000) + `}`, "nested deeper than 64"},
	}
	before, _ := d.Log.Stats(t.Context())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, msg := post(tt.body)
			if code != http.StatusBadRequest || !strings.Contains(msg, tt.says) {
				t.Errorf("got %d %q, want 400 naming %q", code, msg, tt.says)
			}
		})
	}
	after, _ := d.Log.Stats(t.Context())
	if after.LastSeq != before.LastSeq {
		t.Errorf("bad input was logged: seq %d → %d", before.LastSeq, after.LastSeq)
	}
	// Floats and nulls in context are normalised, not refused.
	if code, msg := post(`{"principal":"Agent::\"a\"","action":"Action::\"x\"","resource":"Tool::\"t\"","context":{"f":0.5,"n":null}}`); code != http.StatusOK {
		t.Errorf("floats and nulls refused: %d %s", code, msg)
	}
}

// TestServer_OversizeIsALoggedDeny: a body over the limit is not an
// unlogged 400 but a decision deny, request_too_large, with the principal,
// action and resource read as the body streams past (issue 11); and a
// caller's own refusal (header Agentpdp-Refuse) is a logged deny too.
func TestServer_OversizeIsALoggedDeny(t *testing.T) {
	d := pdptest.Serve(t, map[string]string{"p.cedar": `permit (principal, action, resource);`})
	post := func(body string, header map[string]string) (int, map[string]any) {
		hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", d.Sock)
		}}}
		req, _ := http.NewRequest(http.MethodPost, "http://x/v1/authorize", strings.NewReader(body))
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	pad := strings.Repeat("x", 200<<10) // the test daemon's limit is 64 KiB
	for name, body := range map[string]string{
		"PrincipalFirst": `{"principal":"Agent::\"a\"","action":"Action::\"x\"","resource":"Tool::\"t\"","context":{"pad":"` + pad + `"},"tool_call_id":"7"}`,
		"PrincipalLast":  `{"context":{"pad":"` + pad + `","deep":[[{"a":"` + pad + `"}]]},"tool_call_id":"7","resource":{"type":"Tool","id":"t"},"action":"Action::\"x\"","principal":"Agent::\"a\""}`,
	} {
		t.Run(name, func(t *testing.T) {
			code, out := post(body, nil)
			if code != http.StatusOK || out["decision"] != "deny" {
				t.Fatalf("got %d %v, want a deny", code, out)
			}
			reasons, _ := out["reasons"].([]any)
			if len(reasons) != 1 || reasons[0].(map[string]any)["policy"] != wire.ReasonRequestTooLarge {
				t.Errorf("reasons %v", reasons)
			}
			e, err := d.Log.Decision(t.Context(), out["decision_id"].(string))
			if err != nil {
				t.Fatalf("the deny is not in the log: %v", err)
			}
			row := string(e.Body)
			for _, want := range []string{`"principal":"Agent::\"a\""`, `"action":"Action::\"x\""`, `"tool_call_id":"7"`, `exceeds the limit of 65536 bytes`} {
				if !strings.Contains(row, want) {
					t.Errorf("row lacks %s: %.400s", want, row)
				}
			}
			if strings.Contains(row, "xxxx") {
				t.Errorf("the oversize context was logged")
			}
		})
	}
	code, out := post(`{"principal":"Agent::\"a\"","action":"Action::\"x\"","resource":"Tool::\"t\""}`,
		map[string]string{wire.HeaderRefuse: wire.ReasonRequestRefused, wire.HeaderRefuseDetail: "not forwarded"})
	if code != http.StatusOK || out["decision"] != "deny" || !strings.Contains(fmt.Sprint(out["reasons"]), "request_refused") {
		t.Errorf("a caller's refusal: %d %v", code, out)
	}
	if code, out := post(`{"principal":"Agent::\"a\"","action":"Action::\"x\"","resource":"Tool::\"t\""}`, map[string]string{wire.HeaderRefuse: "allow_please"}); code != http.StatusBadRequest {
		t.Errorf("a refusal with a reason that is not one: %d %v", code, out)
	}
}

// Issue 11: a context nested past SQLite's JSON depth passed the decoder,
// rolled back its group commit, and every concurrent honest request got
// 503. It is refused at decoding now, and the honest requests are answered.
func TestServer_DeepRequestsFailAlone(t *testing.T) {
	d := pdptest.Serve(t, map[string]string{"p.cedar": pdptest.AgentPolicies})
	deep := &wire.Request{Principal: pdptest.Ref(`Agent::"a"`), Action: pdptest.Ref(`Action::"x"`), Resource: pdptest.Ref(`Tool::"t"`),
		Context: json.RawMessage(strings.Repeat(`{"a":`, 1500) + `1` + strings.Repeat(`}`, 1500))}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 48 {
		wg.Go(func() {
			if i%4 == 0 {
				if _, err := d.Agent.Authorize(t.Context(), deep); !client.IsStatus(err, http.StatusBadRequest) {
					errs <- fmt.Errorf("deep request: got %v, want 400", err)
				}
				return
			}
			if _, err := d.Agent.Authorize(t.Context(), pdptest.Request(fmt.Sprintf("honest-%d", i))); err != nil {
				errs <- fmt.Errorf("honest request %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestServer_FailsClosedWhenTheLogFails(t *testing.T) {
	d := pdptest.Serve(t, map[string]string{"p.cedar": pdptest.AgentPolicies})
	if err := d.Log.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, err := d.Agent.Authorize(t.Context(), pdptest.Request("a"))
	if !client.IsStatus(err, http.StatusServiceUnavailable) {
		t.Fatalf("got %v, want 503", err)
	}
	if _, err := d.Agent.AuthorizeBatch(t.Context(), []*wire.Request{pdptest.Request("a")}); !client.IsStatus(err, http.StatusServiceUnavailable) {
		t.Errorf("batch: got %v, want 503", err)
	}
	if _, err := d.Agent.Health(t.Context()); err != nil {
		t.Errorf("the daemon stopped serving: %v", err)
	}
}

func TestServer_ReloadEndpoint(t *testing.T) {
	d := pdptest.Serve(t, map[string]string{"p.cedar": pdptest.AgentPolicies})
	var out struct {
		Reloaded      bool   `json:"reloaded"`
		PolicyVersion string `json:"policy_version"`
	}
	if err := d.Admin.Do(t.Context(), http.MethodPost, "/v1/reload", nil, &out); err != nil || out.Reloaded {
		t.Errorf("unchanged reload: %+v %v", out, err)
	}
	dir := filepath.Dir(d.Sock)
	pdptest.WriteFiles(t, filepath.Join(dir, "policies"), map[string]string{"p.cedar": "permit (principal,"})
	err := d.Admin.Do(t.Context(), http.MethodPost, "/v1/reload", nil, nil)
	if !client.IsStatus(err, http.StatusUnprocessableEntity) || !strings.Contains(err.Error(), "p.cedar:1") {
		t.Errorf("broken reload: %v", err)
	}
	if dec, err := d.Agent.Authorize(t.Context(), pdptest.Request("a")); err != nil || dec.Decision != wire.Allow {
		t.Errorf("old policies stopped serving: %v %v", dec, err)
	}
}

func TestServer_SocketInUse(t *testing.T) {
	d := pdptest.Serve(t, map[string]string{"p.cedar": pdptest.AgentPolicies})
	srv, err := server.New(server.Options{Socket: d.Sock, AdminSocket: d.Asock + "2", Engine: d.Engine, Log: d.Log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := srv.Serve(ctx); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Errorf("second server on a live socket: %v", err)
	}
	// Stopping removes the sockets; a stale file left by a crash is replaced.
	d.Stop()
	for _, p := range []string{d.Sock, d.Asock} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left behind: %v", p, err)
		}
	}
}
