package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/identity"
)

// trustOptions builds the engine's trust boundary from the config: the
// request_entities and unknown_principal rules, the callers rules, and a
// token verifier whose key refreshes run until stop is called. serve waits
// a few seconds for issuers behind a URL or the Workload API to deliver
// keys; until they do, their tokens are denied token_invalid.
func trustOptions(ctx context.Context, cfg *Config, logger *slog.Logger) (pdp.TrustOptions, func(), error) {
	if err := cfg.Identity.Validate(); err != nil {
		return pdp.TrustOptions{}, nil, fmt.Errorf("config: %w", err)
	}
	opts := pdp.TrustOptions{
		RequestEntities:       pdp.RequestEntities(cfg.RequestEntities),
		AllowUnknownPrincipal: cfg.UnknownPrincipal == "allow",
		Require:               cfg.Identity.Require,
		Callers:               cfg.Callers,
		SharedWindow:          cfg.Identity.SharedWindow,
	}
	if !cfg.Identity.Configured() {
		return opts, func() {}, nil
	}
	v, err := identity.New(ctx, cfg.Identity, identity.Options{Logger: logger})
	if err != nil {
		return pdp.TrustOptions{}, nil, err
	}
	opts.Verifier = v
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { v.Run(rctx) })
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := v.Ready(wctx); err != nil {
		logger.Warn("identity issuers without keys yet; their tokens are denied until keys arrive", "err", err)
	} else {
		logger.Info("identity issuers ready", "jwt", len(cfg.Identity.JWT), "spiffe", len(cfg.Identity.SPIFFE), "require", cfg.Identity.Require)
	}
	return opts, func() { cancel(); wg.Wait() }, nil
}
