package console_test

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/console"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

const policies = `
@id("tools") permit (principal, action, resource);
@id("prod") @step_up("production change needs approval")
forbid (principal, action, resource == Tool::"k8s.apply");
`

// cheapHash is an argon2id hash with small parameters, so that the race
// detector's slowness does not make every sign-in take seconds. The
// parameters are read from the hash, as for any other.
func cheapHash(t *testing.T, password string) string {
	t.Helper()
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, 1, 1024, 1, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=19$m=1024,t=1,p=1$%s$%s", b64.EncodeToString(salt), b64.EncodeToString(key))
}

// clock is a settable time for session expiry.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

type fixture struct {
	t      *testing.T
	srv    *console.Server
	http   *httptest.Server
	agent  *client.Client
	reader *decisionlog.Reader
	users  string
	clock  *clock
	daemon *pdptest.Daemon
}

// newFixture runs a real engine and socket server over a real log, and a
// console in front of them, until the test ends.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWith(t, nil)
}

// newFixtureWith is newFixture with a hook to change the engine's options.
func newFixtureWith(t *testing.T, tune func(*pdp.Options)) *fixture {
	t.Helper()
	d := pdptest.ServeWith(t, map[string]string{"p.cedar": policies}, decisionlog.DurabilityFull, tune)
	dir := d.Dir
	dbPath := filepath.Join(dir, "d.db")
	admin := d.Admin
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte("# approvers\nalice:"+cheapHash(t, "alice password 1")+"\nbob:"+cheapHash(t, "bob password 22")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := decisionlog.OpenReader(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	clk := &clock{}
	clk.ns.Store(time.Now().UnixNano())
	srv, err := console.New(console.Config{Reader: r, Admin: admin, UsersFile: users, Operator: "op@host",
		SessionIdle: time.Hour, SessionMaxAge: 12 * time.Hour, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return &fixture{t: t, daemon: d, srv: srv, http: hs, agent: d.Agent, reader: r, users: users, clock: clk}
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects, so that each answer can be checked.
func (f *fixture) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (f *fixture) get(c *http.Client, path string) (*http.Response, string) {
	f.t.Helper()
	resp, err := c.Get(f.http.URL + path)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (f *fixture) post(c *http.Client, path string, form url.Values, header ...string) (*http.Response, string) {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.http.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF field in the page:\n%s", page)
	}
	return m[1]
}

// signIn signs in through the login form and returns the session's CSRF
// token, read from a page.
func (f *fixture) signIn(c *http.Client, user, password string) string {
	f.t.Helper()
	_, page := f.get(c, "/login")
	resp, body := f.post(c, "/login", url.Values{"csrf": {csrfOf(f.t, page)}, "username": {user}, "password": {password}, "next": {"/approvals"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/approvals" {
		f.t.Fatalf("sign-in as %s: %d %s\n%s", user, resp.StatusCode, resp.Header.Get("Location"), body)
	}
	_, page = f.get(c, "/approvals")
	return csrfOf(f.t, page)
}

func (f *fixture) stepUp() *wire.Decision {
	f.t.Helper()
	req := &wire.Request{Principal: ref("Agent::\"deploy-bot\""), Action: ref("Action::\"invoke_tool\""), Resource: ref("Tool::\"k8s.apply\""),
		Context: json.RawMessage(`{"replicas":3}`)}
	d, err := f.agent.Authorize(f.t.Context(), req)
	if err != nil {
		f.t.Fatal(err)
	}
	if d.Decision != wire.StepUp {
		f.t.Fatalf("got %s, want step_up", d.Decision)
	}
	return d
}

func ref(s string) wire.EntityRef {
	r, err := wire.ParseEntityRef(s)
	if err != nil {
		panic(err)
	}
	return r
}

// approvals returns the approval rows for decision id.
func (f *fixture) approvals(id string) []wire.ApprovalRecord {
	f.t.Helper()
	es, err := f.reader.Query(f.t.Context(), decisionlog.Filter{Kinds: []decisionlog.Kind{decisionlog.KindApproval}, DecisionID: id})
	if err != nil {
		f.t.Fatal(err)
	}
	var out []wire.ApprovalRecord
	for _, e := range es {
		var a wire.ApprovalRecord
		if err := json.Unmarshal(e.Body, &a); err != nil {
			f.t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

func TestConsole_EveryPageNeedsASession(t *testing.T) {
	f := newFixture(t)
	d := f.stepUp()
	c := f.browser()
	for _, path := range []string{"/", "/approvals", "/decisions/" + d.DecisionID, "/decisions/" + d.DecisionID + "/chain",
		"/search?decision=step_up", "/integrity", "/nowhere"} {
		resp, body := f.get(c, path)
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login?next=") {
			t.Errorf("GET %s without a session: %d %s, want 303 to /login", path, resp.StatusCode, resp.Header.Get("Location"))
		}
		if strings.Contains(body, "deploy-bot") {
			t.Errorf("GET %s without a session shows the decision", path)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, f.http.URL+"/approvals/live", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("live stream without a session: %d, want 401", resp.StatusCode)
	}
	for _, path := range []string{"/decisions/" + d.DecisionID + "/approval", "/integrity/verify", "/logout"} {
		resp, _ := f.post(c, path, url.Values{"decision": {"approve"}, "csrf": {"anything"}})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s without a session: %d, want 403", path, resp.StatusCode)
		}
	}
	if got := f.approvals(d.DecisionID); len(got) != 0 {
		t.Errorf("approvals recorded without a session: %+v", got)
	}
}

func TestConsole_SignIn(t *testing.T) {
	f := newFixture(t)
	c := f.browser()
	resp, page := f.get(c, "/login")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /login: %d", resp.StatusCode)
	}
	for _, want := range []string{`name="username"`, `name="password"`, `type="hidden" name="csrf"`} {
		if !strings.Contains(page, want) {
			t.Errorf("login form lacks %s", want)
		}
	}
	token := csrfOf(t, page)

	t.Run("WithoutCSRF", func(t *testing.T) {
		resp, _ := f.post(c, "/login", url.Values{"username": {"alice"}, "password": {"alice password 1"}})
		if resp.StatusCode != http.StatusForbidden || sessionCookie(resp) != nil {
			t.Errorf("sign-in without the CSRF field: %d, cookie %v", resp.StatusCode, sessionCookie(resp))
		}
		other := f.browser() // the right field, but not the cookie it was issued with
		resp, _ = f.post(other, "/login", url.Values{"csrf": {token}, "username": {"alice"}, "password": {"alice password 1"}})
		if resp.StatusCode != http.StatusForbidden || sessionCookie(resp) != nil {
			t.Errorf("sign-in with another browser's CSRF token: %d", resp.StatusCode)
		}
	})
	t.Run("WrongPassword", func(t *testing.T) {
		for _, creds := range [][2]string{{"alice", "bob password 22"}, {"mallory", "alice password 1"}, {"alice", ""}} {
			resp, body := f.post(c, "/login", url.Values{"csrf": {token}, "username": {creds[0]}, "password": {creds[1]}})
			if resp.StatusCode != http.StatusUnauthorized || sessionCookie(resp) != nil {
				t.Errorf("sign-in as %s with a wrong password: %d", creds[0], resp.StatusCode)
			}
			token = csrfOf(t, body)
		}
	})
	t.Run("CrossOrigin", func(t *testing.T) {
		resp, _ := f.post(c, "/login", url.Values{"csrf": {token}, "username": {"alice"}, "password": {"alice password 1"}}, "Origin", "http://evil.example")
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("sign-in posted from another origin: %d", resp.StatusCode)
		}
	})
	t.Run("AnotherSignInPageKeepsTheForm", func(t *testing.T) {
		// A browser loads the sign-in page again on its own (a favicon
		// request redirected there, another tab): the form on screen must
		// still work.
		b := f.browser()
		_, first := f.get(b, "/login")
		f.get(b, "/favicon.ico")
		f.get(b, "/login?next=/approvals")
		resp, _ := f.post(b, "/login", url.Values{"csrf": {csrfOf(t, first)}, "username": {"alice"}, "password": {"alice password 1"}})
		if resp.StatusCode != http.StatusSeeOther || sessionCookie(resp) == nil {
			t.Errorf("sign-in with the first form after a second page: %d", resp.StatusCode)
		}
	})
	t.Run("Right", func(t *testing.T) {
		_, page := f.get(c, "/login")
		resp, _ := f.post(c, "/login", url.Values{"csrf": {csrfOf(t, page)}, "username": {"alice"}, "password": {"alice password 1"}, "next": {"//evil.example/x"}})
		ck := sessionCookie(resp)
		if resp.StatusCode != http.StatusSeeOther || ck == nil {
			t.Fatalf("sign-in: %d", resp.StatusCode)
		}
		if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" {
			t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/", ck)
		}
		if loc := resp.Header.Get("Location"); loc != "/" {
			t.Errorf("sign-in with next=//evil.example/x went to %q, want /", loc)
		}
		resp, body := f.get(c, "/approvals")
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `id="signed-in-user">alice<`) {
			t.Errorf("after sign-in, /approvals: %d", resp.StatusCode)
		}
	})
}

func sessionCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == "agentpdp_session" && c.Value != "" {
			return c
		}
	}
	return nil
}

func TestConsole_ThrottlesGuessing(t *testing.T) {
	f := newFixture(t)
	c := f.browser()
	_, page := f.get(c, "/login")
	token := csrfOf(t, page)
	for range 5 {
		_, body := f.post(c, "/login", url.Values{"csrf": {token}, "username": {"bob"}, "password": {"guess guess guess"}})
		token = csrfOf(t, body)
	}
	resp, _ := f.post(c, "/login", url.Values{"csrf": {token}, "username": {"bob"}, "password": {"bob password 22"}})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the right password after 5 failures: %d, want 401 until the window passes", resp.StatusCode)
	}
	f.clock.advance(6 * time.Minute)
	f.signIn(c, "bob", "bob password 22")
}

func TestConsole_ApprovalNeedsTheSessionsCSRFToken(t *testing.T) {
	f := newFixture(t)
	d := f.stepUp()
	alice, bob := f.browser(), f.browser()
	aliceToken := f.signIn(alice, "alice", "alice password 1")
	bobToken := f.signIn(bob, "bob", "bob password 22")
	path := "/decisions/" + d.DecisionID + "/approval"

	for name, form := range map[string]url.Values{
		"none":            {"decision": {"approve"}},
		"empty":           {"decision": {"approve"}, "csrf": {""}},
		"another session": {"decision": {"approve"}, "csrf": {bobToken}},
		"made up":         {"decision": {"approve"}, "csrf": {strings.Repeat("A", len(aliceToken))}},
	} {
		resp, _ := f.post(alice, path, form)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("approval with %s CSRF token: %d, want 403", name, resp.StatusCode)
		}
	}
	resp, _ := f.post(alice, path, url.Values{"decision": {"approve"}, "csrf": {aliceToken}}, "Origin", "http://evil.example")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("approval posted from another origin: %d, want 403", resp.StatusCode)
	}
	if got := f.approvals(d.DecisionID); len(got) != 0 {
		t.Fatalf("refused forms recorded approvals: %+v", got)
	}

	// The approver is the session's account: a typed one is ignored.
	resp, _ = f.post(alice, path, url.Values{"decision": {"approve"}, "comment": {"CHG-1"}, "approver": {"mallory"}, "csrf": {aliceToken}},
		"Origin", f.http.URL)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("approval: %d", resp.StatusCode)
	}
	got := f.approvals(d.DecisionID)
	if len(got) != 1 || got[0].Approver != "alice" || !got[0].Approved || got[0].Comment != "CHG-1" {
		t.Fatalf("recorded approvals: %+v, want one by alice", got)
	}
	_, page := f.get(alice, "/decisions/"+d.DecisionID+"?done=approved")
	if !strings.Contains(page, `<td class="approver">alice</td>`) {
		t.Errorf("the decision page does not name alice as the approver")
	}

	// The agent's retry with the approval is allowed.
	retry := &wire.Request{Principal: ref("Agent::\"deploy-bot\""), Action: ref("Action::\"invoke_tool\""), Resource: ref("Tool::\"k8s.apply\""),
		Context: json.RawMessage(`{"replicas":3}`), Approval: d.DecisionID}
	rd, err := f.agent.Authorize(t.Context(), retry)
	if err != nil {
		t.Fatal(err)
	}
	if rd.Decision != wire.Allow {
		t.Errorf("retry with the approval: %s, want allow", rd.Decision)
	}

	// A second answer is refused by the daemon, and says why.
	resp, body := f.post(bob, path, url.Values{"decision": {"reject"}, "csrf": {bobToken}})
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "already approved by alice") {
		t.Errorf("second answer: %d\n%s", resp.StatusCode, body)
	}
}

func TestConsole_OneTimeLink(t *testing.T) {
	f := newFixture(t)
	link := f.srv.SignInLink(time.Minute)
	c := f.browser()
	resp, _ := f.get(c, link)
	if resp.StatusCode != http.StatusSeeOther || sessionCookie(resp) == nil {
		t.Fatalf("one-time link: %d", resp.StatusCode)
	}
	_, page := f.get(c, "/approvals")
	if !strings.Contains(page, `id="signed-in-user">op@host<`) {
		t.Error("the link did not sign in as the operator account")
	}
	resp, _ = f.get(f.browser(), link)
	if resp.StatusCode != http.StatusForbidden || sessionCookie(resp) != nil {
		t.Errorf("the link used twice: %d, want 403", resp.StatusCode)
	}
	late := f.srv.SignInLink(time.Minute)
	f.clock.advance(2 * time.Minute)
	if resp, _ := f.get(f.browser(), late); resp.StatusCode != http.StatusForbidden {
		t.Errorf("an expired link: %d, want 403", resp.StatusCode)
	}
	if resp, _ := f.get(f.browser(), "/login/link/made-up"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a made-up link: %d, want 403", resp.StatusCode)
	}
}

func TestConsole_SessionsEnd(t *testing.T) {
	f := newFixture(t)
	c := f.browser()
	token := f.signIn(c, "alice", "alice password 1")
	f.clock.advance(59 * time.Minute)
	if resp, _ := f.get(c, "/approvals"); resp.StatusCode != http.StatusOK {
		t.Fatalf("within the idle time: %d", resp.StatusCode)
	}
	f.clock.advance(61 * time.Minute)
	if resp, _ := f.get(c, "/approvals"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after an hour idle: %d, want 303 to /login", resp.StatusCode)
	}

	token = f.signIn(c, "alice", "alice password 1")
	resp, _ := f.post(c, "/logout", url.Values{"csrf": {token}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out: %d", resp.StatusCode)
	}
	if resp, _ := f.get(c, "/approvals"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after signing out: %d, want 303 to /login", resp.StatusCode)
	}
}

func TestConsole_Headers(t *testing.T) {
	f := newFixture(t)
	c := f.browser()
	f.signIn(c, "alice", "alice password 1")
	for _, path := range []string{"/login", "/approvals", "/static/app.css"} {
		resp, _ := f.get(c, path)
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("%s: Content-Security-Policy %q", path, csp)
		}
		if resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: framing or sniffing headers missing", path)
		}
	}
	// A rebound DNS name reaching the loopback console is refused.
	req, _ := http.NewRequest(http.MethodGet, f.http.URL+"/login", nil)
	req.Host = "evil.example"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("Host evil.example: %d, want 421", resp.StatusCode)
	}
	// No page pulls anything from elsewhere.
	_, page := f.get(c, "/")
	if regexp.MustCompile(`(src|href)="(https?:)?//`).MatchString(page) {
		t.Error("the overview loads something from another origin")
	}
}

func TestUsers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	if err := console.AddUser(path, "carol@example.com", "a long password"); err != nil {
		t.Fatal(err)
	}
	if err := console.AddUser(path, "dave", "another long one"); err != nil {
		t.Fatal(err)
	}
	if err := console.AddUser(path, "carol@example.com", "a new long password"); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("accounts file mode %v, want 0600", st.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "dave:$argon2id$v=19$m=65536,t=3,p=2$") || !strings.HasPrefix(lines[1], "carol@example.com:$argon2id$") {
		t.Errorf("accounts file:\n%s", b)
	}
	if strings.Contains(string(b), "long password") {
		t.Error("the accounts file holds a password")
	}
	for _, bad := range []struct{ name, password string }{
		{"", "a long password"}, {"has space", "a long password"}, {"colon:name", "a long password"}, {"-dash", "a long password"},
		{"eve", "short"},
	} {
		if err := console.AddUser(path, bad.name, bad.password); err == nil {
			t.Errorf("AddUser(%q, %q) succeeded", bad.name, bad.password)
		}
	}
}

func TestConsole_SignsInWithTheHashesItWritesAndBcrypt(t *testing.T) {
	f := newFixture(t)
	if err := console.AddUser(f.users, "carol", "carol's long password"); err != nil {
		t.Fatal(err)
	}
	bc, err := bcrypt.GenerateFromPassword([]byte("dave's long password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	fh, _ := os.OpenFile(f.users, os.O_APPEND|os.O_WRONLY, 0)
	fmt.Fprintf(fh, "dave:%s\n", bc)
	fh.Close()
	f.signIn(f.browser(), "carol", "carol's long password")
	f.signIn(f.browser(), "dave", "dave's long password")
}

func TestConsole_SearchAndChain(t *testing.T) {
	f := newFixture(t)
	c := f.browser()
	f.signIn(c, "alice", "alice password 1")
	parent, err := f.agent.Authorize(t.Context(), &wire.Request{Principal: ref(`Agent::"planner"`), Action: ref(`Action::"invoke_tool"`), Resource: ref(`Tool::"search"`), TraceID: "tr-1"})
	if err != nil {
		t.Fatal(err)
	}
	child, err := f.agent.Authorize(t.Context(), &wire.Request{Principal: ref(`Agent::"worker"`), Action: ref(`Action::"invoke_tool"`), Resource: ref(`Tool::"fetch"`), TraceID: "tr-1", ParentDecisionID: parent.DecisionID})
	if err != nil {
		t.Fatal(err)
	}
	resp, page := f.get(c, "/search?trace_id=tr-1&principal=worker")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, child.DecisionID) || strings.Contains(page, parent.DecisionID) {
		t.Errorf("search by trace and principal: %d, child found %v, parent found %v", resp.StatusCode, strings.Contains(page, child.DecisionID), strings.Contains(page, parent.DecisionID))
	}
	// Paged by seq: one a page, the next page holds the older one.
	_, page = f.get(c, "/search?trace_id=tr-1&limit=1")
	next := regexp.MustCompile(`href="(/search\?[^"]*before_seq=[^"]*)" rel="next"`).FindStringSubmatch(page)
	if !strings.Contains(page, child.DecisionID) || next == nil {
		t.Fatalf("first page of one: child %v, next link %v", strings.Contains(page, child.DecisionID), next)
	}
	_, page = f.get(c, strings.ReplaceAll(next[1], "&amp;", "&"))
	if !strings.Contains(page, parent.DecisionID) || strings.Contains(page, child.DecisionID) {
		t.Error("the second page does not hold just the parent")
	}
	if resp, page := f.get(c, "/search?decision=maybe"); resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "decision:") {
		t.Errorf("a bad filter: %d", resp.StatusCode)
	}
	if resp, _ := f.get(c, "/search?nonsense=1"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("an unknown filter: %d", resp.StatusCode)
	}
	loose, err := f.agent.Authorize(t.Context(), &wire.Request{Principal: ref(`Agent::"other"`), Action: ref(`Action::"invoke_tool"`), Resource: ref(`Tool::"x"`), TraceID: "tr-1"})
	if err != nil {
		t.Fatal(err)
	}
	_, page = f.get(c, "/decisions/"+child.DecisionID+"/chain")
	if i := strings.Index(page, `id="trace-h"`); i < 0 || !strings.Contains(page[i:], loose.DecisionID) {
		t.Error("the chain page does not list the trace's decision outside the tree")
	}
	page = page[strings.Index(page, `class="tree"`):strings.Index(page, `id="trace-h"`)]
	pi, ci := strings.Index(page, parent.DecisionID), strings.Index(page, child.DecisionID)
	if pi < 0 || ci < 0 || pi > ci {
		t.Errorf("chain from the child: parent at %d, child at %d", pi, ci)
	}
	if resp, _ := f.get(c, "/decisions/no-such-id"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown decision: %d", resp.StatusCode)
	}
}

func TestConsole_DecisionMarksDecidingLines(t *testing.T) {
	f := newFixture(t)
	c := f.browser()
	f.signIn(c, "alice", "alice password 1")
	d := f.stepUp()
	_, page := f.get(c, "/decisions/"+d.DecisionID)
	// The forbid starts at line 3 of the file (after a blank line and the
	// permit); its lines are marked, the permit's are not.
	if !strings.Contains(page, `<mark id="policy-prod" aria-label="deciding policy prod starts">@id(&#34;prod&#34;) @step_up`) {
		t.Errorf("the deciding policy's first line is not marked:\n%s", page)
	}
	if strings.Contains(page, `<mark>@id(&#34;tools&#34;)`) || strings.Contains(page, `aria-label="deciding policy tools`) {
		t.Error("a policy that did not decide is marked")
	}
	for _, want := range []string{"production change needs approval", `<th scope="row">caller</th>`, "No person has answered this step-up", `name="decision" value="approve"`} {
		if !strings.Contains(page, want) {
			t.Errorf("decision page lacks %q", want)
		}
	}
}

func TestConsole_LiveStreamBringsNewStepUps(t *testing.T) {
	f := newFixture(t)
	c := f.browser()
	f.signIn(c, "alice", "alice password 1")
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, f.http.URL+"/approvals/live", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("live stream: %d %s", resp.StatusCode, ct)
	}
	events := make(chan string)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev strings.Builder
		for sc.Scan() {
			line := sc.Text()
			if line == "" {
				events <- ev.String()
				ev.Reset()
				continue
			}
			ev.WriteString(line + "\n")
		}
	}()
	next := func() string {
		t.Helper()
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("the stream ended")
			}
			return ev
		case <-time.After(30 * time.Second):
			t.Fatal("no event in 30s")
		}
		return ""
	}
	if first := next(); !strings.HasPrefix(first, "event: pending\n") || !strings.Contains(first, "No step-up is waiting") {
		t.Fatalf("first event:\n%s", first)
	}
	d := f.stepUp()
	for {
		ev := next()
		if strings.Contains(ev, `id="p-`+d.DecisionID+`"`) {
			if !strings.Contains(ev, "production change needs approval") || !strings.Contains(ev, `name="csrf"`) {
				t.Errorf("the event lacks the reason or the form:\n%s", ev)
			}
			break
		}
	}
}

func TestConsole_TooLateToApprove(t *testing.T) {
	f := newFixture(t)
	d := f.stepUp()
	c := f.browser()
	token := f.signIn(c, "alice", "alice password 1")
	f.clock.advance(16 * time.Minute)
	_, page := f.get(c, "/approvals")
	if strings.Contains(page, d.DecisionID) {
		t.Error("a step-up past the pending window is still listed")
	}
	resp, body := f.post(c, "/decisions/"+d.DecisionID+"/approval", url.Values{"decision": {"approve"}, "csrf": {token}})
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "must ask again") {
		t.Errorf("approving after the window: %d", resp.StatusCode)
	}
	if got := f.approvals(d.DecisionID); len(got) != 0 {
		t.Errorf("recorded: %+v", got)
	}
	// Not a step-up at all.
	allowed, err := f.agent.Authorize(t.Context(), &wire.Request{Principal: ref(`Agent::"a"`), Action: ref(`Action::"invoke_tool"`), Resource: ref(`Tool::"t"`)})
	if err != nil {
		t.Fatal(err)
	}
	if resp, _ := f.post(c, "/decisions/"+allowed.DecisionID+"/approval", url.Values{"decision": {"approve"}, "csrf": {token}}); resp.StatusCode != http.StatusConflict {
		t.Errorf("approving an allow: %d, want 409", resp.StatusCode)
	}
	if resp, _ := f.post(c, "/decisions/"+allowed.DecisionID+"/approval", url.Values{"decision": {"maybe"}, "csrf": {token}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("decision=maybe: %d, want 400", resp.StatusCode)
	}
}

func TestConsole_OverviewShowsDenialsAndReloadErrors(t *testing.T) {
	f := newFixture(t)
	c := f.browser()
	f.signIn(c, "alice", "alice password 1")
	// The fixture's policies deny nothing; a forbid for mallory does.
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	polDir := filepath.Join(f.daemon.Dir, "policies")
	must(os.WriteFile(filepath.Join(polDir, "p.cedar"), []byte(policies+`@id("no-mallory") forbid (principal == Agent::"mallory", action, resource);`), 0o644))
	must(f.daemon.Admin.Do(t.Context(), http.MethodPost, "/v1/reload", nil, nil))
	for range 3 {
		_, err := f.agent.Authorize(t.Context(), &wire.Request{Principal: ref(`Agent::"mallory"`), Action: ref(`Action::"invoke_tool"`), Resource: ref(`Tool::"db.drop"`)})
		must(err)
	}
	must(os.WriteFile(filepath.Join(polDir, "broken.cedar"), []byte("permit (principal,"), 0o644))
	f.daemon.Admin.Do(t.Context(), http.MethodPost, "/v1/reload", nil, nil) // refused: 422
	_, page := f.get(c, "/")
	for _, want := range []string{`Agent::&#34;mallory&#34;</a>`, `Tool::&#34;db.drop&#34;</a>`, "Last reload failed", "broken.cedar", `<svg class="chart"`, "3 (100.0%)"} {
		if !strings.Contains(page, want) {
			t.Errorf("the overview lacks %s", want)
		}
	}
}
