package console

import (
	"net/http"
	"net/url"
	"strings"
	"time"
)

const loginCookieAge = 30 * time.Minute

type loginData struct {
	Next  string
	User  string
	Error string
}

// loginForm is GET /login: the form, with a CSRF token that is also set as
// a cookie (double submit), since there is no session yet to bind it to.
func (s *Server) loginForm(w http.ResponseWriter, r *http.Request) {
	s.renderLogin(w, r, http.StatusOK, loginData{Next: safeNext(r.URL.Query().Get("next"))})
}

func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, status int, d loginData) {
	// Keep the browser's token if it has one: a second sign-in page (in
	// another tab, or a redirect the browser follows on its own) must not
	// invalidate the form already shown.
	token := ""
	if c, err := r.Cookie(loginCookie); err == nil && len(c.Value) == 43 {
		token = c.Value
	} else {
		token = randomToken()
	}
	setCookie(w, r, loginCookie, token, loginCookieAge)
	s.render(w, r, status, "login", &view{Title: "Sign in", CSRF: token, Data: d})
}

// login is POST /login: username and password, checked against the
// accounts file. On success the session cookie replaces any other, and the
// browser goes where it was going.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		s.problem(w, r, nil, http.StatusBadRequest, "Bad form", "The sign-in form could not be read.")
		return
	}
	c, err := r.Cookie(loginCookie)
	if err != nil || !tokensEqual(r.PostFormValue(csrfField), c.Value) || !sameOrigin(r) {
		s.logger.Warn("console: sign-in without a valid CSRF token refused")
		s.problem(w, r, nil, http.StatusForbidden, "Refused", "The form's security token is missing or wrong. Open the sign-in page again.")
		return
	}
	name := strings.TrimSpace(r.PostFormValue("username"))
	password := r.PostFormValue("password")
	next := safeNext(r.PostFormValue("next"))
	if !s.checkAccount(r, name, password) {
		s.renderLogin(w, r, http.StatusUnauthorized, loginData{Next: next, User: name, Error: "Wrong name or password, or too many attempts: try again in a few minutes."})
		return
	}
	s.startSession(w, r, name, "password")
	setCookie(w, r, loginCookie, "", -1)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// checkAccount reports whether name and password match the accounts file.
// An unknown name costs the same time as a known one.
func (s *Server) checkAccount(r *http.Request, name, password string) bool {
	if s.cfg.UsersFile == "" || ValidUserName(name) != nil || password == "" || len(password) > 1024 {
		return false
	}
	if s.throttle.blocked(name) {
		s.logger.Warn("console: sign-in throttled", "user", name)
		return false
	}
	users, err := readUsers(s.cfg.UsersFile)
	if err != nil {
		s.logger.Error("console: cannot read the accounts file; nobody can sign in with a password", "err", err)
		return false
	}
	hash, known := users[name]
	if !known {
		hash = dummyHash()
	}
	select {
	case s.hashing <- struct{}{}:
	case <-r.Context().Done():
		return false
	}
	ok, err := checkPassword(hash, password)
	<-s.hashing
	if err != nil {
		s.logger.Error("console: account has an unreadable password hash", "user", name, "err", err)
	}
	if !ok || !known {
		s.throttle.fail(name)
		s.logger.Info("console: sign-in failed", "user", name)
		return false
	}
	s.throttle.succeed(name)
	return true
}

// loginLink is GET /login/link/{token}: a one-time link printed at start
// signs in as the operator account.
func (s *Server) loginLink(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Operator == "" || !s.links.redeem(r.PathValue("token")) {
		s.problem(w, r, nil, http.StatusForbidden, "Link not valid", "This sign-in link was used already, has expired, or never existed. Sign in with a name and password, or restart the console for a new link.")
		return
	}
	s.startSession(w, r, s.cfg.Operator, "link")
	http.Redirect(w, r, "/approvals", http.StatusSeeOther)
}

func (s *Server) startSession(w http.ResponseWriter, r *http.Request, user, via string) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.sessions.delete(c.Value) // never keep a token chosen before sign-in
	}
	token, _ := s.sessions.create(user, via)
	setCookie(w, r, sessionCookie, token, s.cfg.SessionMaxAge)
	s.logger.Info("console: signed in", "user", user, "via", via)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, sess *session) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.sessions.delete(c.Value)
	}
	setCookie(w, r, sessionCookie, "", -1)
	s.logger.Info("console: signed out", "user", sess.user)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// safeNext keeps a post-sign-in destination on this console: a path, never
// a URL to elsewhere (//host, /\host, or with a scheme).
func safeNext(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") ||
		strings.ContainsAny(next, "\r\n\t") || strings.HasPrefix(next, "/login") {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" {
		return "/"
	}
	return next
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }
