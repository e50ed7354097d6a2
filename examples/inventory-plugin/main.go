// Command inventory-plugin is an example agentpdp entity provider: it reads
// an agent inventory (a JSON file, the first argument, reread when it
// changes) and answers each request with the principal's entity, so policies
// see the owner, team and trust the inventory holds, whatever the agent
// claims. Build it with `make examples` and wire it in the config:
//
//	entity_providers:
//	  - {name: inventory, command: ./bin/inventory-plugin, args: [./examples/inventory-plugin/inventory.json], timeout: 500ms}
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/agentpdp/agentpdp/pdp/wire"
	"github.com/agentpdp/agentpdp/plugins"
)

// inventory maps an agent id to its record.
type record struct {
	Owner string `json:"owner"`
	Team  string `json:"team"`
	Trust string `json:"trust"`
}

type provider struct {
	path string

	mu     sync.Mutex
	mtime  time.Time
	agents map[string]record
}

func (p *provider) load() (map[string]record, error) {
	st, err := os.Stat(p.path)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if st.ModTime().Equal(p.mtime) && p.agents != nil {
		return p.agents, nil
	}
	b, err := os.ReadFile(p.path)
	if err != nil {
		return nil, err
	}
	var agents map[string]record
	if err := json.Unmarshal(b, &agents); err != nil {
		return nil, fmt.Errorf("%s: %w", p.path, err)
	}
	p.agents, p.mtime = agents, st.ModTime()
	return agents, nil
}

func (p *provider) Entities(_ context.Context, req *wire.Request) ([]wire.Entity, error) {
	if req.Principal.Type != "Agent" {
		return nil, nil
	}
	agents, err := p.load()
	if err != nil {
		return nil, err // agentpdp denies the request and logs why
	}
	a, ok := agents[req.Principal.ID]
	if !ok {
		return nil, nil // unknown to the inventory: policies decide
	}
	attrs, _ := json.Marshal(map[string]any{
		"owner": map[string]any{"__entity": map[string]string{"type": "User", "id": a.Owner}},
		"trust": a.Trust,
	})
	return []wire.Entity{{
		UID:     req.Principal,
		Attrs:   attrs,
		Parents: []wire.EntityRef{{Type: "Team", ID: a.Team}},
	}}, nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: inventory-plugin INVENTORY.json (run by agentpdp, not by hand)")
		os.Exit(2)
	}
	plugins.ServeEntityProvider(&provider{path: os.Args[1]})
}
