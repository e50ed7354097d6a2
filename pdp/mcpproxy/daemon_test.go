package mcpproxy_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/client"
)

// daemon is a real agentpdp (engine, SQLite log, socket server) in this
// process, so that every decision and outcome the proxy asks for is logged
// and can be read back.
type daemon struct {
	log    *decisionlog.Log
	client *client.Client
	admin  *client.Client
}

const testPolicies = `
@id("search") permit (principal == Agent::"bot", action == Action::"search", resource);
@id("echo") permit (principal, action == Action::"echo", resource);
@id("slow") permit (principal, action == Action::"slow", resource);
@id("big") permit (principal, action == Action::"big", resource);
@id("no-prod") forbid (principal, action == Action::"echo", resource) when { context.args has env && context.args.env == "prod" };
@id("deploy") @step_up("deploys need a human") permit (principal, action == Action::"deploy", resource);`

func startDaemon(t testing.TB, maxBody int64, durability decisionlog.Durability) *daemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "mcpp") // short: sun_path holds 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	pol := filepath.Join(dir, "policies")
	os.MkdirAll(pol, 0o755)
	if err := os.WriteFile(filepath.Join(pol, "mcp.cedar"), []byte(testPolicies), 0o644); err != nil {
		t.Fatal(err)
	}
	log, err := decisionlog.Open(context.Background(), filepath.Join(dir, "d.db"), decisionlog.Options{Durability: durability})
	if err != nil {
		t.Fatal(err)
	}
	e, err := pdp.NewEngine(pdp.Options{Policies: pol, Recorder: log, Log: log, Key: []byte("0123456789abcdef0123456789abcdef"), Prompt: pdp.PromptDrop})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Reload(context.Background(), "startup"); err != nil {
		t.Fatal(err)
	}
	sock, asock := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	srv, err := pdp.NewServer(pdp.ServerOptions{Socket: sock, AdminSocket: asock, Engine: e, Log: log, MaxBodyBytes: maxBody})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		log.Close(context.Background())
	})
	for _, p := range []string{sock, asock} {
		deadline := time.Now().Add(5 * time.Second)
		for {
			c, err := net.Dial("unix", p)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("socket %s: %v", p, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	d := &daemon{log: log, client: client.New(sock), admin: client.New(asock)}
	t.Cleanup(d.client.Close)
	t.Cleanup(d.admin.Close)
	return d
}
