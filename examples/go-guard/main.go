// Command go-guard wraps Go functions with agentpdp's client.Guard: each runs
// only if the daemon allows it, and its outcome is logged. Run it against
// `make run`:
//
//	go run ./examples/go-guard
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

func main() {
	socket := os.Getenv("AGENTPDP_SOCKET")
	if socket == "" {
		socket = "./var/agentpdp.sock"
	}
	pdpc := client.New(socket)
	defer pdpc.Close()
	ctx := context.Background()

	call := func(agent, tool string, fn func(context.Context) error) {
		req := &wire.Request{
			Principal: wire.EntityRef{Type: "Agent", ID: agent},
			Action:    wire.EntityRef{Type: "Action", ID: "invoke_tool"},
			Resource:  wire.EntityRef{Type: "Tool", ID: tool},
			SessionID: "go-guard-demo",
		}
		err := pdpc.Guard(ctx, req, fn)
		var denied *client.DeniedError
		var stepUp *client.StepUpError
		switch {
		case errors.As(err, &stepUp):
			fmt.Printf("%s → %s: step_up, approve decision %s\n", agent, tool, stepUp.Decision.DecisionID)
		case errors.As(err, &denied):
			fmt.Printf("%s → %s: %v\n", agent, tool, denied)
		case err != nil:
			fmt.Printf("%s → %s: %v\n", agent, tool, err)
		}
	}

	call("billing-bot", "sql.query", func(context.Context) error {
		fmt.Println("billing-bot → sql.query: allowed, ran the query")
		return nil
	})
	call("deploy-bot", "k8s.apply", func(context.Context) error {
		panic("a step_up must not run the function")
	})
	call("billing-bot", "invoices.export", func(context.Context) error {
		panic("a deny must not run the function")
	})
}
