package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentpdp/agentpdp/pdp/wire"
	"github.com/agentpdp/agentpdp/plugins"
)

// PluginConfig is how a plugin binary is run.
type PluginConfig struct {
	Name     string
	Command  string
	Args     []string
	Checksum string // hex SHA-256 of the binary; checked before it runs, if set
	// Restarts, if set, counts this plugin's relaunches after it died, for
	// metrics; the daemon shares one counter among its plugins.
	Restarts *atomic.Int64
}

// process runs one plugin binary, relaunching it when it has died, no more
// often than a doubling backoff allows, so a crashing plugin cannot take
// the daemon's CPU.
//
// Its errors at run time do not name the plugin: the caller that knows
// what the plugin is for names it (the shipper "sink NAME: ", the engine
// "entity provider NAME: "), so the name appears once.
type process struct {
	cfg    PluginConfig
	kind   string
	logger *slog.Logger

	mu       sync.Mutex
	client   *plugin.Client
	impl     any
	launches int
	notUntil time.Time // no relaunch before this
	backoff  time.Duration
}

func newProcess(cfg PluginConfig, kind string, logger *slog.Logger) (*process, error) {
	if cfg.Command == "" {
		return nil, errors.New("command is required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &process{cfg: cfg, kind: kind, logger: logger.With("plugin", cfg.Name), backoff: 250 * time.Millisecond}
	if _, err := p.get(); err != nil {
		return nil, err
	}
	return p, nil
}

// get returns the running plugin, launching it if it is not running.
func (p *process) get() (any, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client != nil && !p.client.Exited() {
		return p.impl, nil
	}
	if p.client != nil {
		p.client.Kill()
		p.client = nil
	}
	if now := time.Now(); now.Before(p.notUntil) {
		return nil, fmt.Errorf("the plugin is down; relaunching in %v", p.notUntil.Sub(now).Round(time.Millisecond))
	}
	cmd := exec.Command(p.cfg.Command, p.cfg.Args...)
	dieWithDaemon(cmd)
	cc := &plugin.ClientConfig{
		HandshakeConfig:  plugins.Handshake,
		Plugins:          plugin.PluginSet{plugins.KindSink: &plugins.SinkPlugin{}, plugins.KindEntityProvider: &plugins.EntityProviderPlugin{}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Managed:          true, // killed by plugin.CleanupClients at shutdown
		StartTimeout:     10 * time.Second,
		Logger:           hclog.New(&hclog.LoggerOptions{Name: "plugin." + p.cfg.Name, Level: hclog.Warn}),
	}
	if p.cfg.Checksum != "" {
		sum, err := hex.DecodeString(p.cfg.Checksum)
		if err != nil {
			return nil, fmt.Errorf("checksum: %w", err)
		}
		cc.SecureConfig = &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()}
	}
	client := plugin.NewClient(cc)
	impl, err := dispense(client, p.kind)
	if err != nil {
		client.Kill()
		p.notUntil = time.Now().Add(p.backoff)
		p.backoff = min(p.backoff*2, 30*time.Second)
		return nil, fmt.Errorf("launch: %w", err)
	}
	p.launches++
	if p.launches > 1 {
		if p.cfg.Restarts != nil {
			p.cfg.Restarts.Add(1)
		}
		p.logger.Warn("plugin restarted", "launches", p.launches)
	}
	p.client, p.impl, p.backoff = client, impl, 250*time.Millisecond
	return impl, nil
}

// getCtx is get bounded by ctx: a relaunch on a request's path must not
// outlast the request's deadline. The launch goes on (bounded by the start
// timeout) and the next caller finds the plugin running.
func (p *process) getCtx(ctx context.Context) (any, error) {
	type result struct {
		impl any
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		impl, err := p.get()
		ch <- result{impl, err}
	}()
	select {
	case r := <-ch:
		return r.impl, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("launch: %w", ctx.Err())
	}
}

func dispense(c *plugin.Client, kind string) (any, error) {
	rpc, err := c.Client()
	if err != nil {
		return nil, err
	}
	return rpc.Dispense(kind)
}

// died is told of a failed call: if the process is gone, the next get
// relaunches it.
func (p *process) died(err error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client != nil && p.client.Exited() {
		p.logger.Error("plugin died", "err", err)
		return fmt.Errorf("the plugin died: %w", err)
	}
	return err
}

func (p *process) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client != nil {
		p.client.Kill()
	}
}

// PluginSink is a Sink run as a plugin binary, relaunched if it crashes.
// While it is down, Ship fails and the shipper retries: rows wait.
type PluginSink struct{ p *process }

// NewPluginSink launches the plugin.
func NewPluginSink(cfg PluginConfig, logger *slog.Logger) (*PluginSink, error) {
	p, err := newProcess(cfg, plugins.KindSink, logger)
	if err != nil {
		return nil, fmt.Errorf("sink %s: %w", cfg.Name, err)
	}
	return &PluginSink{p: p}, nil
}

// Name is the configured name.
func (s *PluginSink) Name() string { return s.p.cfg.Name }

// Ship sends the batch to the plugin.
func (s *PluginSink) Ship(ctx context.Context, b *plugins.Batch) error {
	impl, err := s.p.getCtx(ctx)
	if err != nil {
		return err
	}
	if err := impl.(plugins.Sink).Ship(ctx, b); err != nil {
		if plugins.IsPermanent(err) {
			return err
		}
		return s.p.died(err)
	}
	return nil
}

// Close kills the plugin.
func (s *PluginSink) Close() error {
	s.p.close()
	return nil
}

// PluginProvider is an entity provider run as a plugin binary, relaunched if
// it crashes. Its answers are cached per principal and resource for TTL.
type PluginProvider struct {
	p   *process
	ttl time.Duration

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	ents []wire.Entity
	at   time.Time
}

// NewPluginProvider launches the plugin. ttl 0 caches nothing. Its errors
// do not name the provider: the caller does ("entity provider NAME: ").
func NewPluginProvider(cfg PluginConfig, ttl time.Duration, logger *slog.Logger) (*PluginProvider, error) {
	p, err := newProcess(cfg, plugins.KindEntityProvider, logger)
	if err != nil {
		return nil, err
	}
	return &PluginProvider{p: p, ttl: ttl, cache: map[string]cached{}}, nil
}

// Entities asks the plugin, or the cache.
func (pp *PluginProvider) Entities(ctx context.Context, req *wire.Request) ([]wire.Entity, error) {
	key := req.Principal.String() + "\x00" + req.Resource.String()
	if pp.ttl > 0 {
		pp.mu.Lock()
		c, ok := pp.cache[key]
		pp.mu.Unlock()
		if ok && time.Since(c.at) < pp.ttl {
			return c.ents, nil
		}
	}
	impl, err := pp.p.getCtx(ctx)
	if err != nil {
		return nil, err
	}
	ents, err := impl.(plugins.EntityProvider).Entities(ctx, req)
	if err != nil {
		// gRPC may report the deadline a moment before ctx does.
		if cerr := ctx.Err(); errors.Is(cerr, context.DeadlineExceeded) || (cerr == nil && status.Code(err) == codes.DeadlineExceeded) {
			return nil, fmt.Errorf("no answer within the deadline: %w", context.DeadlineExceeded)
		} else if cerr != nil {
			return nil, cerr
		}
		return nil, pp.p.died(err)
	}
	if pp.ttl > 0 {
		pp.mu.Lock()
		if len(pp.cache) > 100000 { // bound memory: start over rather than grow
			pp.cache = map[string]cached{}
		}
		pp.cache[key] = cached{ents: ents, at: time.Now()}
		pp.mu.Unlock()
	}
	return ents, nil
}

// Close kills the plugin.
func (pp *PluginProvider) Close() error {
	pp.p.close()
	return nil
}

// Pid is the running plugin's process id, 0 if it is not running.
func (p *process) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client == nil || p.client.Exited() {
		return 0
	}
	if rc := p.client.ReattachConfig(); rc != nil {
		return rc.Pid
	}
	return 0
}

// Pid is the sink plugin's process id, 0 if it is not running.
func (s *PluginSink) Pid() int { return s.p.pid() }

// Pid is the provider plugin's process id, 0 if it is not running.
func (pp *PluginProvider) Pid() int { return pp.p.pid() }
