package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/mask"
	"github.com/agentpdp/agentpdp/pdp/policy"
	"github.com/agentpdp/agentpdp/pdp/server"
	"github.com/agentpdp/agentpdp/pdp/wire"
	"github.com/agentpdp/agentpdp/plugins/host"
	"github.com/agentpdp/agentpdp/plugins/shipper"
)

// serveCmd is agentpdp serve: the daemon.
type serveCmd struct {
	streams
	config                                                  string
	policies, db, socket, adminSocket, signingKey, logLevel string
	acceptTail                                              bool
}

func newServeCmd() *cobra.Command {
	s := &serveCmd{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve decisions on the Unix sockets, logging each before answering",
		Args:  noArgs,
		RunE:  runE(s, nil),
	}
	f := cmd.Flags()
	f.StringVar(&s.config, "config", "", "YAML configuration `file` (every key has a default)")
	f.StringVar(&s.policies, "policies", "", "policy `directory` (default ./policies)")
	f.StringVar(&s.db, "db", "", "decision log `file` (default ./var/decisions.db)")
	f.StringVar(&s.socket, "socket", "", "decision socket `path` (default ./var/agentpdp.sock)")
	f.StringVar(&s.adminSocket, "admin-socket", "", "admin socket `path` (default ./var/agentpdp-admin.sock)")
	f.StringVar(&s.signingKey, "signing-key", "", "Ed25519 checkpoint signing key `file` (default ./var/signing.key)")
	f.StringVar(&s.logLevel, "log-level", "", "debug, info, warn or error (default info)")
	f.BoolVar(&s.acceptTail, "accept-tail", false, "start although the log's tail is not what this daemon last wrote (recorded in the log); see log verify first")
	return cmd
}

// loadConfig reads the file if one was named, then applies flags over it.
func (s *serveCmd) loadConfig() (Config, error) {
	cfg := DefaultConfig()
	if s.config != "" {
		var err error
		if cfg, err = LoadConfig(s.config); err != nil {
			return cfg, err
		}
	}
	for _, o := range []struct {
		flag string
		dst  *string
	}{
		{s.policies, &cfg.Policies}, {s.db, &cfg.DB}, {s.socket, &cfg.Socket},
		{s.adminSocket, &cfg.AdminSocket}, {s.signingKey, &cfg.SigningKey}, {s.logLevel, &cfg.Log.Level},
	} {
		if o.flag != "" {
			*o.dst = o.flag
		}
	}
	return cfg, cfg.validateFile(s.config)
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	lv.UnmarshalText([]byte(level)) // validated by Config.Validate
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func (s *serveCmd) Run(ctx context.Context) error {
	cfg, err := s.loadConfig()
	if err != nil {
		return err
	}
	logger := newLogger(s.stderr, cfg.Log.Level, cfg.Log.Format)
	slog.SetDefault(logger)
	if os.Getenv("GOGC") == "" { // an operator's GOGC wins
		debug.SetGCPercent(cfg.GCPercent)
	}

	// A start that fails must leave nothing behind: check what can fail
	// before the first file (the log's directory, a key, the database) is
	// made.
	if err := checkPolicies(cfg); err != nil {
		return err
	}
	if err := checkSockets(cfg); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(cfg.DB), 0o750); err != nil {
		return fmt.Errorf("create log directory: %w", err)
	}
	var signingKey ed25519.PrivateKey
	if cfg.SigningKey != "" {
		if signingKey, err = loadOrCreateSigningKey(cfg.SigningKey, logger); err != nil {
			return err
		}
	} else {
		logger.Warn("signing_key is empty: checkpoints are not signed, so a truncated or rewritten log cannot be proven")
	}
	hmacKey, err := loadOrCreateKey(cfg.HMACKey)
	if err != nil {
		return err
	}
	metrics := server.NewMetrics()
	var restarts atomic.Int64 // of every plugin, providers and sinks
	if cfg.Identity.SharedWindow < 0 {
		logger.Info("shared identities are not flagged (identity.shared_window is negative)")
	}
	metrics.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "agentpdp_plugin_restarts_total", Help: "Plugin processes relaunched after they died."},
		func() float64 { return float64(restarts.Load()) }))
	// Plugins are go-plugin managed clients: killed at shutdown, whatever path it takes.
	defer plugin.CleanupClients()
	var providers []pdp.ProviderConfig
	for _, pc := range cfg.EntityProviders {
		prov, err := host.NewPluginProvider(host.PluginConfig{Name: pc.Name, Command: pc.Command, Args: pc.Args, Checksum: pc.Checksum, Restarts: &restarts}, pc.CacheTTL, logger)
		if err != nil {
			return fmt.Errorf("entity provider %s: %w", pc.Name, err)
		}
		defer prov.Close()
		providers = append(providers, pdp.ProviderConfig{Name: pc.Name, Provider: prov, Timeout: pc.Timeout})
	}
	trust, stopIdentity, err := trustOptions(ctx, &cfg, logger.With("component", "identity"))
	if err != nil {
		return err
	}
	defer stopIdentity()
	if v := trust.Verifier; v != nil && cfg.Identity.TokenCache.Entries() > 0 {
		metrics.Register(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "agentpdp_token_cache_hits_total",
				Help: "Token verifications answered from the cache of verified tokens (times and key still checked), refusals included."},
				func() float64 { return float64(v.TokenCacheStats().Hits) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "agentpdp_token_cache_misses_total",
				Help: "Tokens verified in full (signature and claims): new, evicted, or their issuer's keys changed."},
				func() float64 { return float64(v.TokenCacheStats().Misses) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "agentpdp_token_cache_entries",
				Help: "Verified tokens the cache holds (identity.token_cache.max_entries at most)."},
				func() float64 { return float64(v.TokenCacheStats().Entries) }),
		)
	}
	// SIGHUP reloads the policies: the reload component owns it, beside
	// file changes and POST /v1/reload.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	p, err := pdp.Open(ctx, pdp.Config{
		Engine: pdp.Options{
			Policies:         cfg.Policies,
			Shadow:           cfg.Shadow,
			OnError:          wire.OnError(cfg.OnError),
			Prompt:           pdp.PromptMode(cfg.Prompt),
			Key:              hmacKey,
			Mask:             cfg.Mask,
			MaskAction:       mask.Action(cfg.MaskAction),
			ApprovalTTL:      cfg.Approvals.TTL,
			ApprovalReusable: !cfg.Approvals.SingleUse,
			EntityProviders:  providers,
			Trust:            trust,
		},
		DB: cfg.DB,
		Log: decisionlog.Options{
			Durability:         decisionlog.Durability(cfg.Durability),
			MaxBatch:           cfg.Commit.MaxBatch,
			MaxWait:            cfg.Commit.MaxWait,
			GroupWait:          cfg.Commit.GroupWait,
			GroupMin:           cfg.Commit.GroupMin,
			SigningKey:         signingKey,
			Origin:             cfg.Origin,
			AcceptTail:         s.acceptTail,
			CheckpointEvery:    cfg.Checkpoints.EveryRows,
			CheckpointInterval: cfg.Checkpoints.Every,
		},
		Debounce:      cfg.Reload.Debounce,
		ReloadMaxWait: cfg.Reload.MaxWait,
		Hangup:        hup,
		Metrics:       metrics,
		Logger:        logger,
	})
	if locked := (*decisionlog.LockedError)(nil); errors.As(err, &locked) {
		// Another daemon writes this log (make run, say): say what to do.
		return fmt.Errorf("serve: %w; stop it, or give this one its own --db, --socket and --admin-socket", err)
	}
	if err != nil {
		return err
	}
	// The log is closed last, after the server has answered everything in
	// flight, on a context of its own: ctx is already cancelled by then.
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := p.Close(cctx); err != nil {
			logger.Error("close decision log", "err", err)
		}
	}()
	snap := p.Snapshot()
	logger.Info("policies loaded", "dir", cfg.Policies, "policy_version", snap.Version, "policies", len(snap.Policies), "schema", snap.Schema)
	if shadow := p.ShadowSnapshot(); shadow != nil {
		logger.Info("shadow policies loaded: evaluated and recorded beside every decision, never answered", "dir", cfg.Shadow, "policy_version", shadow.Version)
	}

	var shipper *shipper.Shipper
	if len(cfg.Sinks) > 0 {
		var closeSinks func()
		if shipper, closeSinks, err = newShipper(ctx, cfg.DB, cfg.Sinks, logger, &restarts); err != nil {
			return err
		}
		defer closeSinks()
		metrics.Register(shipper.Collectors()...)
		if err := keepCosignatures(ctx, shipper, p.Log, logger.With("component", "witness")); err != nil {
			return err
		}
	}
	opts := server.Options{
		Socket:       cfg.Socket,
		AdminSocket:  cfg.AdminSocket,
		MaxBodyBytes: cfg.MaxBodyBytes,
		MaxJSONDepth: cfg.MaxJSONDepth,
		Engine:       p.Engine,
		Log:          p.Log,
		Reloader:     p,
		Metrics:      metrics,
		Logger:       logger.With("component", "server"),
	}
	if shipper != nil {
		opts.Sinks = func(ctx context.Context) any { return shipper.Status(ctx) }
	}
	server, err := server.New(opts)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := p.Run(ctx); err != nil {
			logger.Error("policy watcher stopped; reload with SIGHUP or POST /v1/reload", "err", err)
		}
	})
	if shipper != nil {
		wg.Go(func() { shipper.Run(ctx) })
	}
	if cfg.Retention.MaxAge > 0 || cfg.Retention.MaxRows > 0 {
		r := decisionlog.Retention{MaxAge: cfg.Retention.MaxAge, MaxRows: cfg.Retention.MaxRows, Every: cfg.Retention.Every, Sinks: sinkNames(cfg.Sinks)}
		wg.Go(func() { p.Log.Retain(ctx, r, logger.With("component", "retention")) })
	}
	logger.Info("agentpdp serving", "socket", cfg.Socket, "admin_socket", cfg.AdminSocket, "db", cfg.DB, "durability", cfg.Durability)
	err = server.Serve(ctx)
	cancel()
	wg.Wait()
	logger.Info("agentpdp stopped")
	return err
}

// checkPolicies loads the policy (and shadow) directories once, as the
// engine will, so that a tree that does not load stops serve before it
// creates anything.
func checkPolicies(cfg Config) error {
	for _, d := range []struct{ key, dir string }{{"policies", cfg.Policies}, {"shadow_policies", cfg.Shadow}} {
		if d.dir == "" {
			continue
		}
		st, err := os.Stat(d.dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return usagef("serve: %s %s: no such directory; give --policies DIR, or set %s in the --config file", d.key, d.dir, d.key)
		case err != nil:
			return fmt.Errorf("serve: %s: %w", d.key, err)
		case !st.IsDir():
			return usagef("serve: %s %s: not a directory", d.key, d.dir)
		}
		if _, err := policy.LoadDir(d.dir, policy.LoadOptions{}); err != nil {
			var le *policy.LoadError
			if errors.As(err, &le) {
				return fmt.Errorf("serve: %s %s does not load; nothing was started:\n%w", d.key, d.dir, loadFailed(d.dir, err))
			}
			return fmt.Errorf("serve: %s: %w", d.key, err)
		}
	}
	return nil
}

// checkSockets refuses sockets another daemon is serving on, before serve
// creates anything; the server checks again when it binds them.
func checkSockets(cfg Config) error {
	for _, sock := range []struct{ key, path string }{{"socket", cfg.Socket}, {"admin_socket", cfg.AdminSocket}} {
		st, err := os.Lstat(sock.path)
		if err != nil {
			continue // absent: serve creates it
		}
		if st.Mode()&os.ModeSocket == 0 {
			return fmt.Errorf("serve: %s %s: exists and is not a socket; remove it or choose another path", sock.key, sock.path)
		}
		if c, err := net.DialTimeout("unix", sock.path, time.Second); err == nil {
			c.Close()
			return fmt.Errorf("serve: %s %s: another agentpdp is serving on it; stop it, or give this one its own --socket, --admin-socket and --db", sock.key, sock.path)
		}
	}
	return nil
}

// loadOrCreateSigningKey reads the checkpoint signing key, creating a pair
// (FILE and FILE.pub) on first start so that checkpoints are signed from
// the first row. A key kept on another host is stronger: see keygen.
func loadOrCreateSigningKey(path string, logger *slog.Logger) (ed25519.PrivateKey, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if err := writeKeyPair(path, false); err != nil {
			return nil, err
		}
		logger.Warn("created a checkpoint signing key; verify the log with its public key", "key", path, "pubkey", path+".pub")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("signing key %s: mode %#o lets others read it; chmod 600 it", path, st.Mode().Perm())
	}
	key, err := decisionlog.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return key, nil
}

// loadOrCreateKey reads a secret key file, creating one of 32 random bytes
// (mode 0600) if there is none. It refuses a key file others can read.
func loadOrCreateKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return nil, fmt.Errorf("create key %s: %w", path, err)
		}
		key = make([]byte, 32)
		rand.Read(key)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create key %s: %w", path, err)
		}
		if _, err := f.Write(key); err != nil {
			f.Close()
			return nil, fmt.Errorf("create key %s: %w", path, err)
		}
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("create key %s: %w", path, err)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read key %s: %w", path, err)
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key %s: mode %#o lets others read it; chmod 600 it", path, st.Mode().Perm())
	}
	if len(key) < 16 {
		return nil, fmt.Errorf("key %s: %d bytes, want at least 16", path, len(key))
	}
	return key, nil
}
