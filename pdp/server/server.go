// Package server serves the wire API over Unix sockets: decisions on the
// decision socket; reads of the log, reloads, approvals, metrics and
// profiles on the admin socket. It records each caller's kernel credentials
// (SO_PEERCRED) with its decisions, reads log queries from URL parameters,
// and keeps the daemon's Prometheus metrics.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/policy"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// Reloader forces a policy reload; *reload.Reloader and *PDP are one.
type Reloader interface {
	Reload(ctx context.Context, trigger string) (bool, error)
}

// Options configure a Server.
type Options struct {
	Socket       string // decision socket, mode 0660
	AdminSocket  string // admin socket, mode 0600
	MaxBodyBytes int64  // default 16 MiB; a larger authorize body is a logged deny, request_too_large
	MaxBatch     int    // most requests in one batch; default 1000
	// MaxJSONDepth limits how deep a request's objects and arrays nest
	// (max_json_depth); default wire.DefaultMaxDepth.
	MaxJSONDepth    int
	ShutdownTimeout time.Duration
	// ReadHeaderTimeout closes a connection that has not sent its request
	// headers in time (slow-loris clients); default 5s.
	ReadHeaderTimeout time.Duration
	Engine            *pdp.Engine
	Log               pdp.LogReader
	Reloader          Reloader
	Metrics           *Metrics // optional; served at GET /metrics on the admin socket
	// Sinks, if set, reports each sink's cursor and lag for GET /v1/status.
	Sinks  func(ctx context.Context) any
	Logger *slog.Logger
}

// Server serves the wire API over the decision and admin Unix sockets.
// Reading the log back, reloading and approving are on the admin socket only, so that an agent with access to the decision socket can ask
// for decisions and nothing else.
type Server struct {
	opts   Options
	reader wire.Reader
	logger *slog.Logger
}

// New checks opts and fills in defaults.
func New(opts Options) (*Server, error) {
	if opts.Engine == nil || opts.Log == nil {
		return nil, errors.New("server: engine and log are required")
	}
	if opts.Socket == "" || opts.AdminSocket == "" {
		return nil, errors.New("server: both socket paths are required")
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 16 << 20
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 1000
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 30 * time.Second
	}
	if opts.ReadHeaderTimeout <= 0 {
		opts.ReadHeaderTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{opts: opts, reader: wire.Reader{MaxDepth: opts.MaxJSONDepth}, logger: opts.Logger}, nil
}

type peerKey struct{}

// Serve listens on both sockets until ctx ends, then stops accepting,
// lets in-flight requests finish (each has been logged before it is
// answered), and removes the sockets.
func (s *Server) Serve(ctx context.Context) error {
	decisionMux := s.routes(false)
	adminMux := s.routes(true)

	type bound struct {
		srv *http.Server
		ln  net.Listener
	}
	var servers []bound
	closeAll := func() {
		for _, b := range servers {
			b.ln.Close()
		}
	}
	for _, sock := range []struct {
		path    string
		mode    os.FileMode
		handler http.Handler
	}{
		{s.opts.Socket, 0o660, decisionMux},
		{s.opts.AdminSocket, 0o600, adminMux},
	} {
		ln, err := listenUnix(sock.path, sock.mode)
		if err != nil {
			closeAll()
			return err
		}
		servers = append(servers, bound{srv: &http.Server{
			Handler:           sock.handler,
			ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
			ConnContext: func(ctx context.Context, c net.Conn) context.Context {
				return context.WithValue(ctx, peerKey{}, peerOf(c))
			},
		}, ln: ln})
		s.logger.Info("listening", "socket", sock.path, "mode", fmt.Sprintf("%#o", sock.mode))
	}

	errc := make(chan error, len(servers))
	var wg sync.WaitGroup
	for _, b := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.srv.Serve(b.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	// ctx is done: shut down on a context of our own, or Shutdown would not
	// wait for in-flight requests at all.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.ShutdownTimeout)
	defer cancel()
	for _, b := range servers {
		if err := b.srv.Shutdown(sctx); err != nil {
			serveErr = errors.Join(serveErr, fmt.Errorf("shutdown: %w", err))
		}
	}
	wg.Wait()
	return serveErr
}

// umaskMu serialises the process-wide umask changes of listenWithMode.
var umaskMu sync.Mutex

// afterListen, if set (by tests), runs between bind and chmod.
var afterListen func(path string)

// listenWithMode binds path under a umask that gives the socket no more
// than mode from the moment it exists: a chmod after bind leaves a window
// in which, under a loose umask in a shared directory, anyone can connect.
// The umask is the process's, so it is held only for the bind, and only
// ever narrows what other files created meanwhile get.
func listenWithMode(path string, mode os.FileMode) (net.Listener, error) {
	umaskMu.Lock()
	defer umaskMu.Unlock()
	old := syscall.Umask(int(^mode & 0o777))
	defer syscall.Umask(old)
	return net.Listen("unix", path)
}

// listenUnix binds path with mode, replacing a socket file left by a daemon
// that died, but never one that another daemon still serves on.
func listenUnix(path string, mode os.FileMode) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("listen %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen %s: another process is serving on it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("listen %s: remove stale socket: %w", path, err)
		}
	}
	ln, err := listenWithMode(path, mode)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	if afterListen != nil {
		afterListen(path)
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	return ln, nil
}

// routes is the handler of one socket: the decision socket's routes, or with
// admin the admin socket's too. A path served with another method is a 405
// with an Allow header; an unknown path a 404 naming the paths there are.
func (s *Server) routes(admin bool) http.Handler {
	socket := "the decision socket (reads, reloads and approvals are on the admin socket)"
	if admin {
		socket = "the admin socket"
	}
	mux := newRouteMux(socket)
	mux.HandleFunc("POST /v1/authorize", s.authorize)
	mux.HandleFunc("POST /v1/authorize/batch", s.authorizeBatch)
	mux.HandleFunc("POST /v1/decisions/{id}/outcome", s.outcome)
	mux.HandleFunc("GET /v1/health", s.health)
	if !admin {
		return mux
	}
	mux.HandleFunc("GET /v1/status", s.status)
	mux.HandleFunc("GET /v1/decisions", s.listDecisions)
	mux.HandleFunc("GET /v1/decisions/{id}", s.getDecision)
	mux.HandleFunc("POST /v1/reload", s.reload)
	// Approvals only here: an agent that can reach the decision socket must
	// never be able to approve its own step-up.
	mux.HandleFunc("POST /v1/decisions/{id}/approval", s.approval)
	if s.opts.Metrics != nil {
		mux.Handle("GET /metrics", s.opts.Metrics.handler())
	}
	// Profiles for operators, on the admin socket only.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

func (s *Server) outcome(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	req, err := s.reader.DecodeOutcome(body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	rec, seq, err := s.opts.Engine.Outcome(r.Context(), r.PathValue("id"), req, peerFrom(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := map[string]any{"recorded": true, "seq": seq}
	if rec.ActedAgainst {
		out["acted_against_decision"] = true
		s.logger.Warn("caller reports acting against a decision", "decision_id", rec.DecisionID, "decision", rec.Decision, "status", rec.Status, "principal", rec.Principal)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) approval(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	req, err := s.reader.DecodeApproval(body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	rec, seq, err := s.opts.Engine.Approve(r.Context(), r.PathValue("id"), req, peerFrom(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"recorded": true, "seq": seq, "approved": rec.Approved, "expires_at": rec.ExpiresAt})
}

func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.fail(w, r, wire.BadRequest("", fmt.Errorf("request body exceeds the limit of %d bytes", tooBig.Limit)))
		} else {
			s.fail(w, r, wire.BadRequest("", fmt.Errorf("read body: %w", err)))
		}
		return nil, false
	}
	return body, true
}

func peerFrom(r *http.Request) *wire.Peer {
	p, _ := r.Context().Value(peerKey{}).(*wire.Peer)
	return p
}

func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	body, ok := s.readRequestBody(w, r)
	if !ok {
		return
	}
	req, err := s.reader.DecodeRequest(body)
	if err == nil {
		err = bearer(r, "", req)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var d *wire.Decision
	if reason := r.Header.Get(wire.HeaderRefuse); reason != "" {
		d, err = s.opts.Engine.Refuse(r.Context(), req, peerFrom(r), reason, r.Header.Get(wire.HeaderRefuseDetail))
	} else {
		d, err = s.opts.Engine.Decide(r.Context(), req, peerFrom(r))
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.opts.Metrics.decided([]*wire.Decision{d}, start)
	b, err := wire.MarshalDecision(d)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeBody(w, http.StatusOK, b)
}

func (s *Server) authorizeBatch(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	reqs, err := s.reader.DecodeBatch(body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if len(reqs) > s.opts.MaxBatch {
		s.fail(w, r, wire.BadRequest("/requests", fmt.Errorf("%d requests; the limit is %d", len(reqs), s.opts.MaxBatch)))
		return
	}
	for i, req := range reqs {
		if err := bearer(r, fmt.Sprintf("requests[%d]", i), req); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	ds, err := s.opts.Engine.DecideBatch(r.Context(), reqs, peerFrom(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.opts.Metrics.decided(ds, start)
	writeJSON(w, http.StatusOK, map[string]any{"decisions": ds})
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	snap := s.opts.Engine.Snapshot()
	if snap == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": pdp.ErrNoPolicies.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "policy_version": snap.Version})
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	stats, err := s.opts.Log.Stats(r.Context())
	out := map[string]any{"policies": s.opts.Engine.Status(), "log": stats, "pid": os.Getpid()}
	if s.opts.Sinks != nil {
		out["sinks"] = s.opts.Sinks(r.Context())
	}
	if err != nil {
		out["log_error"] = err.Error()
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) listDecisions(w http.ResponseWriter, r *http.Request) {
	f, err := FilterFromQuery(r.URL.Query(), time.Now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	entries, err := s.opts.Log.Query(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if entries == nil {
		entries = []*decisionlog.Entry{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"decisions": entries})
}

func (s *Server) getDecision(w http.ResponseWriter, r *http.Request) {
	e, err := s.opts.Log.Decision(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, e)
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	if s.opts.Reloader == nil {
		s.fail(w, r, errors.New("reload is not available"))
		return
	}
	changed, err := s.opts.Reloader.Reload(r.Context(), "api")
	if err != nil {
		var le *policy.LoadError
		if errors.As(err, &le) {
			writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": "policies not reloaded: " + err.Error(), "problems": le.Problems})
			return
		}
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"reloaded": changed, "policy_version": s.opts.Engine.Snapshot().Version})
}

// fail maps an error to its status: bad input 400, unknown id 404, anything
// that stops a decision from being logged 503.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var re *wire.RequestError
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		return // the client went away; nobody is left to answer
	case errors.As(err, &re):
		status = http.StatusBadRequest
	case errors.Is(err, decisionlog.ErrNotFound):
		status = http.StatusNotFound
	case errors.As(err, new(*pdp.ConflictError)):
		status = http.StatusConflict
	case errors.Is(err, pdp.ErrLogUnavailable), errors.Is(err, pdp.ErrNoPolicies):
		status = http.StatusServiceUnavailable
	}
	if strings.HasPrefix(r.URL.Path, "/v1/authorize") {
		s.opts.Metrics.reject(status)
	}
	level := slog.LevelError
	if status < 500 {
		level = slog.LevelDebug
	}
	s.logger.Log(r.Context(), level, "request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"encode response"}`)
	}
	writeBody(w, status, b)
}

// jsonContentType is every answer's Content-Type, one slice for all:
// net/http only reads it.
var jsonContentType = []string{"application/json"}

var newline = []byte{'\n'}

// writeBody answers with JSON already encoded, and a newline (written
// apart: the response is buffered, and b need not be copied to add it).
func writeBody(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = []string{strconv.Itoa(len(b) + 1)}
	w.WriteHeader(status)
	w.Write(b)
	w.Write(newline)
}

// bearer puts the Authorization header's bearer token (RFC 6750) into req,
// where the engine verifies it. A request may instead carry it in its
// token field, for clients that cannot set headers; both at once must agree.
func bearer(r *http.Request, field string, req *wire.Request) error {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil
	}
	scheme, tok, ok := strings.Cut(h, " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || strings.ContainsAny(tok, " \t") {
		return wire.BadRequest("Authorization", errors.New("want Bearer <token>"))
	}
	if req.Token != "" && req.Token != tok {
		return wire.BadRequest(wire.JoinField(field, "token"), errors.New("differs from the Authorization header's token"))
	}
	req.Token = tok
	return nil
}
