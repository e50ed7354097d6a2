package pdp_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"

	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// A Go program can embed the decision point: the same decisions, the same
// durable hash-chained log, and (with Run) the same hot reload as the
// daemon, without a socket.
func ExampleOpen() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "agentpdp-example")
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "agents.cedar"), []byte(`
@id("read-tools") permit (principal, action == Action::"invoke_tool", resource) when { resource.writes == false };
@id("prod-writes") @step_up("production change needs approval")
forbid (principal, action == Action::"invoke_tool", resource) when { resource.writes };
@id("writes") permit (principal, action == Action::"invoke_tool", resource) when { resource.writes };`), 0o644)

	key := make([]byte, 32) // keep it in a file outside the database
	rand.Read(key)
	p, err := pdp.Open(ctx, pdp.Config{
		Engine: pdp.Options{Policies: dir, Key: key},
		DB:     filepath.Join(dir, "decisions.db"),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close(ctx)

	for _, writes := range []bool{false, true} {
		d, err := p.Decide(ctx, &wire.Request{
			Principal: wire.EntityRef{Type: "Agent", ID: "billing-bot"},
			Action:    wire.EntityRef{Type: "Action", ID: "invoke_tool"},
			Resource:  wire.EntityRef{Type: "Tool", ID: "sql"},
			Entities:  []wire.Entity{{UID: wire.EntityRef{Type: "Tool", ID: "sql"}, Attrs: []byte(fmt.Sprintf(`{"writes":%v}`, writes))}},
		}, nil)
		if err != nil {
			fmt.Println(err)
			return
		}
		// Seq is the decision's place in the log: it is durable already.
		fmt.Println(d.Decision, d.Reasons[0].Policy, d.Seq)
	}
	// Output:
	// allow read-tools 2
	// step_up prod-writes 3
}
