package client_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/server"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// Guard wraps a tool: it runs only when allowed, and its outcome is logged.
// A step_up names the decision a human approves; the retry carries it.
func ExampleClient_Guard() {
	ctx := context.Background()
	sock, adminSock, stop := daemon(ctx)
	defer stop()

	agent := client.New(sock)
	deploy := &wire.Request{
		Principal: wire.EntityRef{Type: "Agent", ID: "deploy-bot"},
		Action:    wire.EntityRef{Type: "Action", ID: "invoke_tool"},
		Resource:  wire.EntityRef{Type: "Tool", ID: "k8s.apply"},
	}
	apply := func(ctx context.Context) error { fmt.Println("applying web.yaml"); return nil }

	err := agent.Guard(ctx, deploy, apply)
	var stepUp *client.StepUpError
	if errors.As(err, &stepUp) {
		fmt.Println("step_up:", stepUp.Decision.Reasons[0].Annotations["step_up"])
		// A human approves, on the admin socket.
		if _, err := client.New(adminSock).Approve(ctx, stepUp.Decision.DecisionID, "carol@example.com", true, "CHG-1234"); err != nil {
			fmt.Println(err)
			return
		}
		deploy.Approval = stepUp.Decision.DecisionID
		err = agent.Guard(ctx, deploy, apply)
	}
	fmt.Println("error:", err)
	// Output:
	// step_up: production change needs approval
	// applying web.yaml
	// error: <nil>
}

// daemon serves a policy set on fresh sockets, as agentpdp serve does.
func daemon(ctx context.Context) (sock, admin string, stop func()) {
	dir, _ := os.MkdirTemp("", "apdp")
	os.WriteFile(filepath.Join(dir, "p.cedar"), []byte(`
@id("tools") permit (principal, action == Action::"invoke_tool", resource);
@id("prod-writes") @step_up("production change needs approval")
forbid (principal, action, resource == Tool::"k8s.apply");`), 0o644)
	key := make([]byte, 32)
	rand.Read(key)
	p, err := pdp.Open(ctx, pdp.Config{Engine: pdp.Options{Policies: dir, Key: key}, DB: filepath.Join(dir, "d.db")})
	if err != nil {
		panic(err)
	}
	sock, admin = filepath.Join(dir, "a.sock"), filepath.Join(dir, "admin.sock")
	srv, err := server.New(server.Options{Socket: sock, AdminSocket: admin, Engine: p.Engine, Log: p.Log})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	for range 200 {
		if _, err := os.Stat(admin); err == nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	return sock, admin, func() {
		cancel()
		<-done
		p.Close(context.Background())
		os.RemoveAll(dir)
	}
}
