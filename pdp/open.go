package pdp

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp/reload"
)

// Config is everything an embedded PDP needs. Engine's Recorder and Log
// are set by Open to the log it opens.
type Config struct {
	Engine   Options
	DB       string              // the decision log's file
	Log      decisionlog.Options // durability, group commit, checkpoint signing
	Debounce time.Duration       // quiet time before a reload; default 100ms
	// ReloadMaxWait bounds how long continuous changes put a reload off;
	// default 30s. Past it a tree is served only once it reads the same
	// before and after its load.
	ReloadMaxWait time.Duration
	Hangup        <-chan os.Signal // SIGHUP, wired by cmd; optional
	Metrics       Metrics          // optional; *server.Metrics is one
	Logger        *slog.Logger
}

// Metrics is what an embedded PDP reports to: its log's commits, its
// engine's reloads and its log's index lag.
type Metrics interface {
	ObserveCommit(entries int, took time.Duration, err error)
	WatchEngine(*Engine)
	WatchLog(*decisionlog.Log)
}

// PDP is the decision point embedded in a process: the engine, its durable
// hash-chained log and its hot reload, exactly as the daemon runs them (the
// daemon is a PDP behind a socket server).
type PDP struct {
	*Engine
	Log      *decisionlog.Log
	reloader *reload.Reloader
	logger   *slog.Logger
}

// Open opens the log, loads the policies (and shadow policies), and the
// approvals still usable. Call Run to hot-reload and Close when done.
func Open(ctx context.Context, cfg Config) (*PDP, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Log.Logger == nil {
		cfg.Log.Logger = cfg.Logger.With("component", "decisionlog")
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
	trees := []reload.Tree{{Name: "policies", Dir: opts.Policies, Load: stage(engine.Stage), Failed: engine.LoadFailed,
		Version: func() string { return engine.Snapshot().Version }}}
	if opts.Shadow != "" {
		trees = append(trees, reload.Tree{Name: "shadow", Dir: opts.Shadow, Load: stage(engine.StageShadow), Failed: engine.ShadowLoadFailed,
			Version: func() string {
				if s := engine.ShadowSnapshot(); s != nil {
					return s.Version
				}
				return ""
			}})
	}
	// The first load runs here, before any watching: a tree that does not
	// load is a startup error.
	for _, t := range trees {
		commit, err := t.Load(ctx)
		if err == nil {
			_, err = commit(ctx, "startup")
		}
		if err != nil {
			return nil, fmt.Errorf("load %s from %s:\n%w", t.Name, t.Dir, err)
		}
	}
	p := &PDP{Engine: engine, Log: log, logger: cfg.Logger}
	p.reloader = reload.New(reload.Options{Trees: trees, Debounce: cfg.Debounce, MaxWait: cfg.ReloadMaxWait,
		Hangup: cfg.Hangup, Logger: cfg.Logger.With("component", "reload")})
	if err := engine.LoadApprovals(ctx); err != nil {
		return nil, err
	}
	if cfg.Metrics != nil {
		cfg.Metrics.WatchEngine(engine)
		cfg.Metrics.WatchLog(log)
	}
	return p, nil
}

// stage adapts an engine's Stage to reload.Tree's Load.
func stage(f func() (func(context.Context, string) (bool, error), error)) func(context.Context) (reload.Commit, error) {
	return func(context.Context) (reload.Commit, error) {
		commit, err := f()
		return commit, err
	}
}

// Run watches the policy directories and reloads them until ctx ends: the
// one goroutine that owns reloads (pdp/reload).
func (p *PDP) Run(ctx context.Context) error { return p.reloader.Run(ctx) }

// Reload reloads every policy directory now, as SIGHUP and POST /v1/reload
// do, through the same path as a file change. It needs Run to be running.
func (p *PDP) Reload(ctx context.Context, trigger string) (bool, error) {
	return p.reloader.Reload(ctx, trigger)
}

// Close flushes and closes the log: every decision made is on disk after it,
// and a signed checkpoint covers them if the log signs.
func (p *PDP) Close(ctx context.Context) error {
	return p.Log.Close(ctx)
}
