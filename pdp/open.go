package pdp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
)

// Config is everything an embedded PDP needs. Engine's Recorder and Log
// are set by Open to the log it opens.
type Config struct {
	Engine   Options
	DB       string              // the decision log's file
	Log      decisionlog.Options // durability, group commit, checkpoint signing
	Debounce time.Duration       // quiet time before a reload; default 100ms
	Metrics  *Metrics            // optional
	Logger   *slog.Logger
}

// PDP is the decision point embedded in a process: the engine, its durable
// hash-chained log and its hot reload, exactly as the daemon runs them (the
// daemon is a PDP behind a socket server).
type PDP struct {
	*Engine
	Log      *decisionlog.Log
	watchers []*Watcher
	logger   *slog.Logger
}

// Open opens the log, loads the policies (and shadow policies), and the
// approvals still usable. Call Run to hot-reload and Close when done.
func Open(ctx context.Context, cfg Config) (*PDP, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics != nil && cfg.Log.OnCommit == nil {
		cfg.Log.OnCommit = cfg.Metrics.ObserveCommit
	}
	log, err := decisionlog.Open(ctx, cfg.DB, cfg.Log)
	if err != nil {
		return nil, err
	}
	p, err := open(ctx, cfg, log)
	if err != nil {
		log.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return p, nil
}

func open(ctx context.Context, cfg Config, log *decisionlog.Log) (*PDP, error) {
	opts := cfg.Engine
	opts.Recorder, opts.Log = log, log
	engine, err := NewEngine(opts)
	if err != nil {
		return nil, err
	}
	if _, err := engine.Reload(ctx, "startup"); err != nil {
		return nil, fmt.Errorf("load policies from %s:\n%w", opts.Policies, err)
	}
	p := &PDP{Engine: engine, Log: log, logger: cfg.Logger}
	p.watchers = append(p.watchers, NewWatcher(engine, cfg.Debounce, cfg.Logger.With("component", "reload")))
	if opts.Shadow != "" {
		if _, err := engine.ReloadShadow(ctx, "startup"); err != nil {
			return nil, fmt.Errorf("load shadow policies from %s:\n%w", opts.Shadow, err)
		}
		p.watchers = append(p.watchers, NewShadowWatcher(engine, cfg.Debounce, cfg.Logger.With("component", "shadow-reload")))
	}
	if err := engine.LoadApprovals(ctx); err != nil {
		return nil, err
	}
	cfg.Metrics.WatchEngine(engine)
	cfg.Metrics.WatchLog(log)
	return p, nil
}

// Run watches the policy directories and reloads them until ctx ends.
func (p *PDP) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(p.watchers))
	for i, w := range p.watchers {
		wg.Go(func() { errs[i] = w.Run(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Reload forces a reload of every policy directory now, as SIGHUP does. It
// needs Run to be running.
func (p *PDP) Reload(ctx context.Context, trigger string) (bool, error) {
	changed := false
	var errs []error
	for _, w := range p.watchers {
		c, err := w.Reload(ctx, trigger)
		changed = changed || c
		errs = append(errs, err)
	}
	return changed, errors.Join(errs...)
}

// Close flushes and closes the log: every decision made is on disk after it,
// and a signed checkpoint covers them if the log signs.
func (p *PDP) Close(ctx context.Context) error {
	return p.Log.Close(ctx)
}
