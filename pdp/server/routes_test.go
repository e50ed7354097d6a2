package server_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/agentpdp/agentpdp/internal/pdptest"
)

// A wrong method is 405 with an Allow header; an unknown path is 404
// naming the paths there are (issue 17: GET /v1/authorize answered 404).
func TestServer_MethodAndPathErrors(t *testing.T) {
	d := pdptest.Serve(t, map[string]string{"p.cedar": pdptest.AgentPolicies})
	over := func(sock string) *http.Client {
		return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", sock)
		}}}
	}
	do := func(c *http.Client, method, path string) (*http.Response, map[string]any) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, "http://agentpdp"+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatalf("%s %s: a body that is not JSON: %v", method, path, err)
		}
		return resp, body
	}
	agent, admin := over(d.Sock), over(d.Asock)

	tests := []struct {
		c            *http.Client
		method, path string
		allow        string
	}{
		{agent, "GET", "/v1/authorize", "POST"},
		{agent, "PUT", "/v1/authorize/batch", "POST"},
		{agent, "POST", "/v1/health", "GET, HEAD"},
		{admin, "DELETE", "/v1/decisions/x/approval", "POST"},
		{admin, "POST", "/v1/status", "GET, HEAD"},
	}
	for _, tt := range tests {
		resp, body := do(tt.c, tt.method, tt.path)
		msg, _ := body["error"].(string)
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != tt.allow || !strings.Contains(msg, "method not allowed") {
			t.Errorf("%s %s: %d Allow %q %q, want 405 Allow %q", tt.method, tt.path, resp.StatusCode, resp.Header.Get("Allow"), msg, tt.allow)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q", tt.method, tt.path, ct)
		}
	}

	resp, body := do(agent, "GET", "/v1/authorise")
	msg, _ := body["error"].(string)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(msg, "POST /v1/authorize") || !strings.Contains(msg, "admin socket") {
		t.Errorf("unknown path: %d %q", resp.StatusCode, msg)
	}
	if paths, _ := body["paths"].([]any); len(paths) != 4 {
		t.Errorf("the decision socket's paths: %v", body["paths"])
	}
	// The admin socket's own paths are not reachable on the decision socket,
	// and the 404 says where they are.
	resp, body = do(agent, "GET", "/v1/status")
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body["error"].(string), "admin socket") {
		t.Errorf("status on the decision socket: %d %v", resp.StatusCode, body)
	}
	resp, body = do(admin, "GET", "/nothing")
	if msg := body["error"].(string); resp.StatusCode != http.StatusNotFound || !strings.Contains(msg, "GET /v1/status") || strings.Contains(msg, "pprof") {
		t.Errorf("admin 404: %d %q", resp.StatusCode, msg)
	}
}
