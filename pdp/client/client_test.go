package client_test

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

func TestGuard(t *testing.T) {
	sock, admin, stop := daemon(t.Context())
	defer stop()
	agent := client.New(sock)
	req := func(tool string) *wire.Request {
		return &wire.Request{Principal: wire.EntityRef{Type: "Agent", ID: "a"}, Action: wire.EntityRef{Type: "Action", ID: "invoke_tool"}, Resource: wire.EntityRef{Type: "Tool", ID: tool}}
	}
	t.Run("DeniedNeverRuns", func(t *testing.T) {
		ran := false
		err := agent.Guard(t.Context(), &wire.Request{Principal: wire.EntityRef{Type: "Agent", ID: "a"},
			Action: wire.EntityRef{Type: "Action", ID: "delete"}, Resource: wire.EntityRef{Type: "Tool", ID: "db"}},
			func(context.Context) error { ran = true; return nil })
		var denied *client.DeniedError
		if !errors.As(err, &denied) || ran {
			t.Errorf("got %v, ran=%v", err, ran)
		}
	})
	t.Run("ErrorRecorded", func(t *testing.T) {
		boom := errors.New("connection reset")
		err := agent.Guard(t.Context(), req("sql"), func(context.Context) error { return boom })
		if !errors.Is(err, boom) {
			t.Errorf("fn's error not returned: %v", err)
		}
	})
	t.Run("FailsClosed", func(t *testing.T) {
		ran := false
		err := client.New(filepath.Join(t.TempDir(), "nobody.sock")).Guard(t.Context(), req("sql"), func(context.Context) error { ran = true; return nil })
		if err == nil || ran {
			t.Errorf("no daemon: err=%v ran=%v", err, ran)
		}
	})
	t.Run("ApproveOnDecisionSocketRefused", func(t *testing.T) {
		err := agent.Guard(t.Context(), req("k8s.apply"), func(context.Context) error { return nil })
		var su *client.StepUpError
		if !errors.As(err, &su) {
			t.Fatalf("want step_up: %v", err)
		}
		if _, err := agent.Approve(t.Context(), su.Decision.DecisionID, "a", true, ""); !client.IsStatus(err, http.StatusNotFound) {
			t.Errorf("an agent approved itself: %v", err)
		}
		a, err := client.New(admin).Approve(t.Context(), su.Decision.DecisionID, "carol", true, "")
		if err != nil || !a.Approved || a.Seq == 0 {
			t.Errorf("admin approval: %+v %v", a, err)
		}
		if seq, err := agent.Outcome(t.Context(), su.Decision.DecisionID, "skipped", nil); err != nil || seq == 0 {
			t.Errorf("outcome: %d %v", seq, err)
		}
	})
}
