package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"
)

// Cookie names. The session cookie is HttpOnly and SameSite=Strict: no
// script can read it, and no other site's page can make the browser send it.
const (
	sessionCookie = "agentpdp_session"
	loginCookie   = "agentpdp_login" // the login form's CSRF token, before there is a session
	csrfField     = "csrf"
)

// session is one signed-in account. Its CSRF token is bound to it: a form
// posted with another session's token, or none, is refused.
type session struct {
	user    string
	csrf    string
	created time.Time
	seen    time.Time
	via     string // "password" or "link"
}

// sessions holds the signed-in sessions in memory, keyed by the SHA-256 of
// the cookie's token (a dump of the map holds no usable cookie). A restart
// signs everyone out, which is the safe direction.
type sessions struct {
	mu      sync.Mutex
	byToken map[[32]byte]*session
	maxAge  time.Duration // from sign-in
	idle    time.Duration // since the last request
	now     func() time.Time
}

func newSessions(maxAge, idle time.Duration, now func() time.Time) *sessions {
	return &sessions{byToken: map[[32]byte]*session{}, maxAge: maxAge, idle: idle, now: now}
}

// randomToken is 32 random bytes, base64url.
func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		// crypto/rand does not fail on Linux; if it ever did, no token
		// must be predictable, so stop.
		panic("console: crypto/rand: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session for user and returns its cookie token.
func (s *sessions) create(user, via string) (string, *session) {
	token := randomToken()
	now := s.now()
	sess := &session{user: user, csrf: randomToken(), created: now, seen: now, via: via}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	s.byToken[sha256.Sum256([]byte(token))] = sess
	return token, sess
}

// get returns the live session for token, or nil, and marks it seen.
func (s *sessions) get(token string) *session {
	if token == "" {
		return nil
	}
	key := sha256.Sum256([]byte(token))
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.byToken[key]
	if !ok {
		return nil
	}
	if s.expired(sess, now) {
		delete(s.byToken, key)
		return nil
	}
	sess.seen = now
	return sess
}

func (s *sessions) delete(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byToken, sha256.Sum256([]byte(token)))
}

func (s *sessions) expired(sess *session, now time.Time) bool {
	return now.Sub(sess.created) >= s.maxAge || now.Sub(sess.seen) >= s.idle
}

// sweep drops expired sessions; the caller holds mu.
func (s *sessions) sweep(now time.Time) {
	for k, sess := range s.byToken {
		if s.expired(sess, now) {
			delete(s.byToken, k)
		}
	}
}

// tokensEqual compares two tokens in constant time; an empty one never
// matches.
func tokensEqual(a, b string) bool {
	return a != "" && b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// oneTimeLinks are sign-in links for a local operator: each works once,
// until it expires.
type oneTimeLinks struct {
	mu     sync.Mutex
	tokens map[[32]byte]time.Time // → expiry
	now    func() time.Time
}

func (l *oneTimeLinks) issue(ttl time.Duration) string {
	token := randomToken()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tokens == nil {
		l.tokens = map[[32]byte]time.Time{}
	}
	l.tokens[sha256.Sum256([]byte(token))] = l.now().Add(ttl)
	return token
}

// redeem reports whether token is a live link, and spends it either way.
func (l *oneTimeLinks) redeem(token string) bool {
	key := sha256.Sum256([]byte(token))
	l.mu.Lock()
	defer l.mu.Unlock()
	exp, ok := l.tokens[key]
	delete(l.tokens, key)
	return ok && l.now().Before(exp)
}

// throttle limits failed sign-ins per account name and in all: after
// maxFails failures in window, that name is refused until the window has
// passed, whatever the password.
type throttle struct {
	mu       sync.Mutex
	fails    map[string][]time.Time
	maxFails int
	window   time.Duration
	now      func() time.Time
}

func (t *throttle) blocked(name string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.recent(name)) >= t.maxFails
}

func (t *throttle) fail(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fails == nil {
		t.fails = map[string][]time.Time{}
	}
	if len(t.fails) > 10000 { // bound the memory an attacker can make us hold
		clear(t.fails)
	}
	t.fails[name] = append(t.recent(name), t.now())
}

func (t *throttle) succeed(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.fails, name)
}

// recent drops failures older than the window; the caller holds mu.
func (t *throttle) recent(name string) []time.Time {
	cut := t.now().Add(-t.window)
	fs := t.fails[name]
	i := 0
	for i < len(fs) && fs[i].Before(cut) {
		i++
	}
	fs = fs[i:]
	if len(fs) == 0 {
		delete(t.fails, name)
		return nil
	}
	t.fails[name] = fs
	return fs
}

// setCookie writes a cookie the console's way: HttpOnly, SameSite=Strict,
// for the whole site, Secure when the request came over TLS.
func setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge time.Duration) {
	c := &http.Cookie{
		Name: name, Value: value, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil, MaxAge: int(maxAge / time.Second),
	}
	if maxAge < 0 {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}
