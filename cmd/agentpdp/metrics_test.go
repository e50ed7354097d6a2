package main

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

func scrape(t *testing.T, sock string) (int, string) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{Dial: func(_, _ string) (net.Conn, error) { return net.Dial("unix", sock) }}}
	resp, err := hc.Get("http://agentpdp/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServe_Metrics(t *testing.T) {
	d := newDaemonDir(t)
	d.start()
	cl := client.New(d.sock())
	for _, tool := range []string{"sql.query", "invoices.export", "k8s.apply"} {
		agent := "billing-bot"
		if tool == "k8s.apply" {
			agent = "deploy-bot"
		}
		if _, err := cl.Authorize(t.Context(), &wire.Request{Principal: wire.EntityRef{Type: "Agent", ID: agent},
			Action: wire.EntityRef{Type: "Action", ID: "invoke_tool"}, Resource: wire.EntityRef{Type: "Tool", ID: tool}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cl.Authorize(t.Context(), &wire.Request{}); !client.IsStatus(err, http.StatusBadRequest) {
		t.Fatalf("bad request: %v", err)
	}
	code, body := scrape(t, d.asock())
	if code != http.StatusOK {
		t.Fatalf("metrics: %d", code)
	}
	for _, want := range []string{
		`agentpdp_decisions_total{decision="allow"} 1`,
		`agentpdp_decisions_total{decision="deny"} 1`,
		`agentpdp_decisions_total{decision="step_up"} 1`,
		`agentpdp_requests_rejected_total{reason="bad_request"} 1`,
		`agentpdp_log_commit_entries_sum 4`, // the policy load and three decisions
		`agentpdp_policy_reloads_total 1`,
		`agentpdp_decision_duration_seconds_count 3`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if code, _ := scrape(t, d.sock()); code != http.StatusNotFound {
		t.Errorf("the decision socket serves metrics: %d", code)
	}
	// The provenance index catches up with the log once it is quiet.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := scrape(t, d.asock())
		if strings.Contains(body, "\nagentpdp_log_index_lag_rows 0\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the index lag never reached 0:\n%s", grepLines(body, "index_lag"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A token used twice is verified in full once: the token cache's metrics
// count one miss and one hit, and with identity.token_cache.max_entries: 0
// there is no cache and no such metric.
func TestServe_TokenCacheMetrics(t *testing.T) {
	is := pdptest.NewIssuer(t)
	tok := is.Token(t, "billing-bot", 10*time.Minute, nil)
	req := &wire.Request{Principal: wire.EntityRef{Type: "Agent", ID: "billing-bot"},
		Action: wire.EntityRef{Type: "Action", ID: "invoke_tool"}, Resource: wire.EntityRef{Type: "Tool", ID: "sql.query"}}
	for _, c := range []struct {
		name, yaml string
		want       []string
	}{
		{"Default", is.YAML(), []string{"agentpdp_token_cache_hits_total 1\n", "agentpdp_token_cache_misses_total 1\n", "agentpdp_token_cache_entries 1\n"}},
		{"Off", is.YAML() + "  token_cache: {max_entries: 0}\n", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newDaemonDir(t)
			appendConfig(t, d, c.yaml)
			d.start()
			cl := client.New(d.sock()).WithToken(client.StaticToken(tok))
			for range 2 {
				dec, err := cl.Authorize(t.Context(), req)
				if err != nil {
					t.Fatal(err)
				}
				if dec.Decision != wire.Allow {
					t.Fatalf("got %s %+v", dec.Decision, dec.Reasons)
				}
			}
			_, body := scrape(t, d.asock())
			for _, want := range c.want {
				if !strings.Contains(body, want) {
					t.Errorf("metrics lack %q:\n%s", want, grepLines(body, "token_cache"))
				}
			}
			if c.want == nil && strings.Contains(body, "token_cache") {
				t.Errorf("the cache is off, yet:\n%s", grepLines(body, "token_cache"))
			}
		})
	}
}
