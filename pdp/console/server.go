package console

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp/client"
)

// Config is what a console needs. Reader and Admin are required.
type Config struct {
	// Reader reads the decision log; the console never writes it.
	Reader *decisionlog.Reader
	// Admin is a client of the daemon's admin socket: approvals are
	// recorded there, by the daemon, as the engine records any approval.
	Admin *client.Client
	// UsersFile is the accounts file (see AddUser). It is read at each
	// sign-in, so accounts added while the console runs can sign in.
	UsersFile string
	// Operator is the account the one-time sign-in links sign in as: the
	// approver the log records for a local operator. Empty disables links.
	Operator string
	// PublicKey, if set, checks checkpoint signatures on the integrity page.
	PublicKey ed25519.PublicKey
	// WitnessKey, if set, checks the witness cosignatures the log holds
	// (cosignature rows, c2sp.org/tlog-cosignature) on the integrity page:
	// the collector's public key (its witness_key's .pub).
	WitnessKey ed25519.PublicKey
	// PendingWindow is how long a step_up waits for an answer in the
	// console (default 15m): older ones leave the queue, and the console
	// refuses to approve them, so that nobody approves a request its agent
	// gave up on long ago.
	PendingWindow time.Duration
	// SessionMaxAge (default 12h) and SessionIdle (default 1h) end sessions.
	SessionMaxAge, SessionIdle time.Duration
	// Poll is how often the live approvals view looks for new rows
	// (default 500ms).
	Poll   time.Duration
	Logger *slog.Logger
	Now    func() time.Time
}

// Server is the review console: an http.Handler plus the state behind
// sign-in. Create it with New, serve it with Serve.
type Server struct {
	cfg      Config
	logger   *slog.Logger
	sessions *sessions
	links    *oneTimeLinks
	throttle *throttle
	pages    *pages
	mux      *http.ServeMux
	hashing  chan struct{} // bounds concurrent password checks: each takes 64 MiB
	// done is closed when Serve stops, ending live streams.
	done     chan struct{}
	doneOnce sync.Once

	verifying  atomic.Bool // one verification at a time
	verifyMu   sync.Mutex  // guards lastVerify
	lastVerify *verifyResult
}

// verifyResult is the outcome of the last check of the log's chain.
type verifyResult struct {
	At     time.Time
	Took   time.Duration
	Report *decisionlog.VerifyReport
	Err    string
}

// New checks cfg and builds the console.
func New(cfg Config) (*Server, error) {
	if cfg.Reader == nil {
		return nil, errors.New("console: no decision log reader")
	}
	if cfg.Admin == nil {
		return nil, errors.New("console: no admin socket client")
	}
	if cfg.UsersFile == "" && cfg.Operator == "" {
		return nil, errors.New("console: no accounts file and no operator: nobody could sign in")
	}
	if cfg.Operator != "" {
		if err := ValidUserName(cfg.Operator); err != nil {
			return nil, fmt.Errorf("console: operator: %w", err)
		}
	}
	if cfg.PendingWindow <= 0 {
		cfg.PendingWindow = 15 * time.Minute
	}
	if cfg.SessionMaxAge <= 0 {
		cfg.SessionMaxAge = 12 * time.Hour
	}
	if cfg.SessionIdle <= 0 {
		cfg.SessionIdle = time.Hour
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 500 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p, err := loadPages()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		logger:   cfg.Logger,
		sessions: newSessions(cfg.SessionMaxAge, cfg.SessionIdle, cfg.Now),
		links:    &oneTimeLinks{now: cfg.Now},
		throttle: &throttle{maxFails: 5, window: 5 * time.Minute, now: cfg.Now},
		pages:    p,
		mux:      http.NewServeMux(),
		hashing:  make(chan struct{}, 2),
		done:     make(chan struct{}),
	}
	s.routes()
	return s, nil
}

// SignInLink issues a one-time sign-in path for the operator account,
// valid once within ttl: print it, prefixed with the console's URL, for
// the person who started the console. It is empty without an operator.
func (s *Server) SignInLink(ttl time.Duration) string {
	if s.cfg.Operator == "" {
		return ""
	}
	return "/login/link/" + s.links.issue(ttl)
}

// Serve answers on ln until ctx is done, then shuts down within 5 seconds.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.logger.Info("console listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		s.stop()
		return fmt.Errorf("console: %w", err)
	case <-ctx.Done():
	}
	s.stop()
	// A fresh context: ctx is already done, and Shutdown needs time.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("console: %w", err)
	}
	return nil
}

func (s *Server) stop() { s.doneOnce.Do(func() { close(s.done) }) }

// Content-Security-Policy: nothing from elsewhere, no inline script or
// style, no framing, forms only to this origin.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// ServeHTTP sets the security headers every answer carries, refuses Host
// names a loopback console does not have (DNS rebinding), and routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// same-origin, not no-referrer: with no-referrer a browser sends
	// "Origin: null" on its own POSTs, and sameOrigin would refuse them.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
	if !strings.HasPrefix(r.URL.Path, "/static/") {
		h.Set("Cache-Control", "no-store")
	}
	if !hostAllowed(r) {
		http.Error(w, "console: unexpected Host "+r.Host, http.StatusMisdirectedRequest)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// hostAllowed refuses a request to a loopback console whose Host is not a
// loopback name: a page on another site that rebinds its own name to
// 127.0.0.1 must not reach the console with the browser's help.
func hostAllowed(r *http.Request) bool {
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return true
	}
	tcp, ok := local.(*net.TCPAddr)
	if !ok || !tcp.IP.IsLoopback() {
		return true
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (s *Server) routes() {
	m := s.mux
	m.Handle("GET /static/", http.StripPrefix("/static/", staticHandler()))
	m.HandleFunc("GET /favicon.ico", http.NotFound) // pages name /static/favicon.svg
	m.HandleFunc("GET /login", s.loginForm)
	m.HandleFunc("POST /login", s.login)
	m.HandleFunc("GET /login/link/{token}", s.loginLink)
	m.HandleFunc("POST /logout", s.signedIn(s.logout))
	m.HandleFunc("GET /{$}", s.signedIn(s.overview))
	m.HandleFunc("GET /approvals", s.signedIn(s.approvals))
	m.HandleFunc("GET /approvals/live", s.signedIn(s.approvalsLive))
	m.HandleFunc("GET /decisions/{id}", s.signedIn(s.decision))
	m.HandleFunc("POST /decisions/{id}/approval", s.signedIn(s.approve))
	m.HandleFunc("GET /decisions/{id}/chain", s.signedIn(s.chain))
	m.HandleFunc("GET /search", s.signedIn(s.search))
	m.HandleFunc("GET /integrity", s.signedIn(s.integrity))
	m.HandleFunc("POST /integrity/verify", s.signedIn(s.verify))
	m.HandleFunc("/", s.signedIn(func(w http.ResponseWriter, r *http.Request, _ *session) {
		s.problem(w, r, nil, http.StatusNotFound, "Not found", "There is no page at "+r.URL.Path+".")
	}))
}

// signedIn wraps a handler that needs a session. Without one, a page is a
// redirect to the sign-in form (401 for the live stream), and any other
// method is 403. Every POST must carry the session's CSRF token and, when
// the browser sends one, an Origin of this console.
func (s *Server) signedIn(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var sess *session
		if c, err := r.Cookie(sessionCookie); err == nil {
			sess = s.sessions.get(c.Value)
		}
		if sess == nil {
			switch {
			case r.Method == http.MethodGet && r.Header.Get("Accept") != "text/event-stream":
				w.Header().Set("WWW-Authenticate", `Cookie realm="agentpdp console"`)
				http.Redirect(w, r, "/login?next="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			case r.Method == http.MethodGet:
				http.Error(w, "sign in first", http.StatusUnauthorized)
			default:
				s.problem(w, r, nil, http.StatusForbidden, "Not signed in", "Sign in, then try again.")
			}
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !sameOrigin(r) {
				s.problem(w, r, sess, http.StatusForbidden, "Refused", "The request came from another site.")
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			if !tokensEqual(r.PostFormValue(csrfField), sess.csrf) {
				s.logger.Warn("console: form without a valid CSRF token refused", "path", r.URL.Path, "user", sess.user)
				s.problem(w, r, sess, http.StatusForbidden, "Refused", "The form's security token is missing or wrong. Reload the page and try again.")
				return
			}
		}
		h(w, r, sess)
	}
}

// sameOrigin reports whether the request's Origin (or, without one,
// Referer) is this console. Browsers send Origin on every POST; a request
// with neither is from a program, which the CSRF token still checks.
func sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		origin = r.Header.Get("Referer")
	}
	if origin == "" {
		return true
	}
	if origin == "null" {
		return false
	}
	scheme := "http://"
	if r.TLS != nil {
		scheme = "https://"
	}
	want := scheme + r.Host
	return origin == want || strings.HasPrefix(origin, want+"/")
}
