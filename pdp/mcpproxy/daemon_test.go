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
	"github.com/agentpdp/agentpdp/pdp/server"
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
@id("crash") permit (principal, action == Action::"crash", resource);
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
	pd, err := pdp.Open(context.Background(), pdp.Config{
		Engine: pdp.Options{Policies: pol, Key: []byte("0123456789abcdef0123456789abcdef"), Prompt: pdp.PromptDrop},
		DB:     filepath.Join(dir, "d.db"),
		Log:    decisionlog.Options{Durability: durability},
	})
	if err != nil {
		t.Fatal(err)
	}
	log := pd.Log
	sock, asock := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	srv, err := server.New(server.Options{Socket: sock, AdminSocket: asock, Engine: pd.Engine, Log: log, MaxBodyBytes: maxBody})
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
