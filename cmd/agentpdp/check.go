package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/agentpdp/agentpdp/internal/plural"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/policy"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// checkCmd is agentpdp check: decisions in-process, nothing logged.
type checkCmd struct {
	streams
	policies, entities, schema string
	cedarSemantics             bool
	onError, validation        string
	request, requests          string
	// With socket, a running daemon decides (and logs) instead.
	socket, tokenFile, tokenEnv, tokenArg string
	flags                                 *pflag.FlagSet
}

func newCheckCmd() *cobra.Command {
	c := &checkCmd{}
	cmd := &cobra.Command{
		Use:   "check [--policies DIR | --socket SOCK [--token-file FILE | --token-env NAME]] (--request JSON | --requests FILE|-)",
		Short: "Evaluate requests in-process (nothing is logged), or ask a running daemon, and print one decision per line",
		Args:  noArgs,
		RunE:  runE(c, nil),
	}
	f := cmd.Flags()
	f.StringVar(&c.policies, "policies", DefaultConfig().Policies, "policy `directory`")
	f.StringVar(&c.entities, "entities", "", "extra entities `file` in Cedar JSON")
	f.StringVar(&c.schema, "schema", "", "schema `file`; policies are validated against it")
	f.BoolVar(&c.cedarSemantics, "cedar-semantics", false, "plain Cedar: no step-up, erroring policies skipped")
	f.StringVar(&c.onError, "on-error", "deny", "what an erroring forbid does: deny or skip")
	f.StringVar(&c.validation, "validation", "strict", "with a schema: strict, permissive, or off (the schema only types entities)")
	f.StringVar(&c.request, "request", "", "one request as `JSON`")
	f.StringVar(&c.requests, "requests", "", "`file` of requests, one JSON object per line, or - for standard input")
	f.StringVar(&c.socket, "socket", "", "ask the daemon on this decision `socket` instead: its policies and identity issuers decide, and it logs the decisions")
	f.StringVar(&c.tokenFile, "token-file", "", "with --socket: send the JWT or JWT-SVID in this `file` as Authorization: Bearer (re-read when it changes)")
	f.StringVar(&c.tokenEnv, "token-env", "", "with --socket: send the token in this environment `variable` as Authorization: Bearer")
	f.StringVar(&c.tokenArg, "token", "", "refused: a token on the command line is visible to every user (ps); use --token-file or --token-env")
	f.MarkHidden("token")
	c.flags = f
	return cmd
}

func (c *checkCmd) Run(ctx context.Context) error {
	if (c.request == "") == (c.requests == "") {
		return usagef("check: give exactly one of --request or --requests")
	}
	if v := strings.TrimSpace(c.request); v != "" && !strings.HasPrefix(v, "{") {
		// A file name where the JSON belongs is the commonest slip; the
		// decoder would only say "invalid character" at byte 0.
		name := strings.TrimPrefix(v, "@")
		if _, err := os.Stat(name); err == nil {
			return usagef("check: --request takes the request's JSON itself; to read the file %s, use --requests %s", name, name)
		}
	}
	if c.socket != "" || c.tokenFile != "" || c.tokenEnv != "" || c.tokenArg != "" {
		return c.runSocket(ctx)
	}
	if err := needDir("check", "policies", c.policies); err != nil {
		return err
	}
	switch policy.Validation(c.validation) {
	case policy.ValidateStrict, policy.ValidatePermissive, policy.ValidateOff:
	default:
		return usagef("check: --validation %q: want strict, permissive or off", c.validation)
	}
	load := policy.LoadOptions{SchemaFile: c.schema, EntitiesFile: c.entities, Validation: policy.Validation(c.validation)}
	engine, err := pdp.NewEngine(pdp.Options{
		Policies:       c.policies,
		Load:           load,
		OnError:        wire.OnError(c.onError),
		CedarSemantics: c.cedarSemantics,
	})
	if err != nil {
		return usagef("check: %v", err)
	}
	snap, err := policy.LoadDir(c.policies, load)
	if err != nil {
		return exitError{exitFail, loadFailed(c.policies, err)}
	}
	if _, err := engine.Use(ctx, snap, "check"); err != nil {
		return exitError{exitFail, err}
	}
	return c.each(func(b []byte) (*wire.Decision, error) { return decide(engine, b) })
}

// each decides --request, or every line of --requests, and prints one
// decision (or the line's error) per line.
func (c *checkCmd) each(decide func([]byte) (*wire.Decision, error)) error {
	out := json.NewEncoder(c.stdout)
	if c.request != "" {
		d, err := decide([]byte(c.request))
		var fatal *daemonError
		if err != nil && !errors.As(err, &fatal) {
			err = fmt.Errorf("check --request: %w", err)
		}
		if err != nil {
			return exitError{exitFail, err}
		}
		return out.Encode(d)
	}

	in := c.stdin
	if c.requests != "-" {
		f, err := os.Open(c.requests)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	failed := 0
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		d, err := decide(sc.Bytes())
		var fatal *daemonError
		if errors.As(err, &fatal) {
			return exitError{exitFail, err}
		}
		if err != nil {
			// Keep going: one bad line must not hide the decisions of the rest.
			failed++
			if err := out.Encode(map[string]any{"line": line, "error": err.Error()}); err != nil {
				return err
			}
			continue
		}
		if err := out.Encode(d); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read requests: %w", err)
	}
	if failed > 0 {
		return exitError{exitFail, fmt.Errorf("%s could not be evaluated", plural.Count(failed, "request", "requests"))}
	}
	return nil
}

func decide(engine *pdp.Engine, b []byte) (*wire.Decision, error) {
	req, err := wire.DecodeRequest(b)
	if err != nil {
		return nil, fmt.Errorf("bad request: %w", err)
	}
	d, err := engine.Evaluate(req)
	if err != nil {
		var re *wire.RequestError
		if errors.As(err, &re) {
			return nil, fmt.Errorf("bad request: %w", err)
		}
		return nil, err
	}
	return d, nil
}
