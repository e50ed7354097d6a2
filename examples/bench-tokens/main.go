// Command bench-tokens writes what `agentpdp bench` needs to measure the
// daemon with a JWT on every request: a JWKS for examples/bench-jwt.yaml,
// and a requests file (one JSON request a line, for bench --requests) in
// which each agent tool call carries a token for its agent, signed with
// the JWKS's key (ES256, 10 minutes). The daemon's token cache verifies
// each agent's token in full once; examples/bench-jwt.yaml says how to
// turn it off to verify every request in full.
//
//	go run ./examples/bench-tokens ./var
//	./bin/agentpdp serve --config examples/bench-jwt.yaml
//	./bin/agentpdp bench --requests ./var/bench-requests.jsonl -c 64 -d 8s
package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: bench-tokens DIR")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "bench-tokens:", err)
		os.Exit(1)
	}
	dir := os.Args[1]
	fmt.Printf("wrote %s (the JWKS examples/bench-jwt.yaml reads) and %s (%d requests from %d agents, each with an ES256 token valid for %s)\n",
		filepath.Join(dir, "bench-jwks.json"), filepath.Join(dir, "bench-requests.jsonl"), requests, agents, tokenLife)
}

// The requests file's shape: requests agent tool calls by agents agents
// over tools tools, each agent's token valid for tokenLife.
const (
	requests, agents, tools = 1000, 50, 20
	tokenLife               = 10 * time.Minute
)

func run(dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "bench", Algorithm: "ES256", Use: "sig"}}}
	b, err := json.Marshal(set)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("make %s: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bench-jwks.json"), b, 0o644); err != nil {
		return fmt.Errorf("write the JWKS: %w", err)
	}
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "bench"))
	if err != nil {
		return err
	}
	now := time.Now()
	tokens := make([]string, agents)
	for a := range tokens {
		tokens[a], err = jwt.Signed(sg).Claims(jwt.Claims{Issuer: "https://bench.agentpdp.invalid", Subject: fmt.Sprintf("agent-%d", a),
			Audience: jwt.Audience{"agentpdp"}, ID: fmt.Sprintf("jti-%d", a), IssuedAt: jwt.NewNumericDate(now),
			Expiry: jwt.NewNumericDate(now.Add(tokenLife))}).Serialize()
		if err != nil {
			return err
		}
	}
	f, err := os.Create(filepath.Join(dir, "bench-requests.jsonl"))
	if err != nil {
		return fmt.Errorf("write the requests: %w", err)
	}
	w := bufio.NewWriter(f)
	teams := []string{"finance", "platform"}
	trusts := []string{"standard", "standard", "high", "low", "untrusted"}
	classes := []string{"public", "internal", "confidential", "restricted"}
	envs := []string{"dev", "staging", "production"}
	// Each tool names the default pack's catalog as its parent, as the
	// built-in mix's do (cmd/agentpdp/bench.go): the pack's unknown-tools
	// forbid denies every tool outside it, which would make the whole mix
	// one deny and the measurement one of deny only.
	for i := range requests {
		a, t := (i*7)%agents, (i*3)%tools
		team := teams[a%len(teams)]
		agent := fmt.Sprintf(`{"uid":{"type":"Agent","id":"agent-%d"},"parents":[{"type":"Team","id":%q}],"attrs":{"owner":{"__entity":{"type":"User","id":"owner-%d@example.com"}},"trust":%q}}`,
			a, team, a%7, trusts[a%len(trusts)])
		tool := fmt.Sprintf(`{"uid":{"type":"Tool","id":"tool-%d"},"parents":[{"type":"ToolCatalog","id":"default"}],"attrs":{"classification":%q,"environment":%q,"writes":%v,"owner_team":{"__entity":{"type":"Team","id":%q}},"shared":%v}}`,
			t, classes[t%len(classes)], envs[t%len(envs)], t%3 == 0, teams[t%len(teams)], t%5 == 0)
		fmt.Fprintf(w, `{"principal":{"type":"Agent","id":"agent-%d"},"action":{"type":"Action","id":"invoke_tool"},"resource":{"type":"Tool","id":"tool-%d"},"context":{"args":{"query":"select * from t where id = %d","limit":%d}},"entities":[%s,%s],"session_id":"s-%d","token":%q}`+"\n",
			a, t, i, 10+i%90, agent, tool, a, tokens[a])
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}
