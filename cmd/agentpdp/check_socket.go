package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// inProcessFlags configure check's own engine; a daemon has its own.
var inProcessFlags = []string{"policies", "entities", "schema", "cedar-semantics", "on-error", "validation"}

// daemonError is a failure of the daemon rather than of one request (it
// cannot be reached, or cannot log): check stops at the first.
type daemonError struct{ err error }

func (e *daemonError) Error() string { return e.err.Error() }
func (e *daemonError) Unwrap() error { return e.err }

// runSocket is check --socket: each request goes to the daemon, as an
// agent would send it, with the token from --token-file or --token-env.
// The token is never taken from the command line, where ps shows it to
// every user of the machine, and never printed.
func (c *checkCmd) runSocket(ctx context.Context) error {
	switch {
	case c.tokenArg != "":
		return usagef("check: --token: a token on the command line is visible to every user (ps, /proc); use --token-file FILE or --token-env NAME")
	case c.socket == "":
		return usagef("check: --token-file and --token-env need --socket: only the daemon verifies tokens (in-process check has no identity issuers)")
	case c.tokenFile != "" && c.tokenEnv != "":
		return usagef("check: give at most one of --token-file or --token-env")
	}
	for _, name := range inProcessFlags {
		if c.flags != nil && c.flags.Changed(name) {
			return usagef("check: --%s configures the in-process check; with --socket the daemon's own policies and settings decide", name)
		}
	}
	cl := client.New(c.socket)
	defer cl.Close()
	switch {
	case c.tokenFile != "":
		if _, err := os.Stat(c.tokenFile); err != nil {
			return usagef("check: --token-file: %v", err)
		}
		cl = cl.WithToken(client.TokenFile(c.tokenFile))
	case c.tokenEnv != "":
		tok := strings.TrimSpace(os.Getenv(c.tokenEnv))
		if tok == "" {
			return usagef("check: --token-env %s: the variable is unset or empty", c.tokenEnv)
		}
		cl = cl.WithToken(client.StaticToken(tok))
	}
	return c.each(func(b []byte) (*wire.Decision, error) {
		if !json.Valid(b) {
			return nil, errors.New("bad request: not a JSON value")
		}
		var d wire.Decision
		// The request's own bytes: the daemon's strict reading is the one
		// that counts, not a re-encoding of ours.
		err := cl.Do(ctx, http.MethodPost, "/v1/authorize", json.RawMessage(b), &d)
		var status *client.Error
		switch {
		case err == nil:
			return &d, nil
		case errors.As(err, &status) && status.Status == http.StatusBadRequest:
			return nil, fmt.Errorf("bad request: %s", status.Message)
		default:
			return nil, &daemonError{fmt.Errorf("check: %w", err)}
		}
	})
}
