//go:build browser

// The console in a real browser: headless Chromium (Debian's package,
// installed by .ci/setup-browser.sh) driven by chromedp, against a real
// daemon and a real console, each a child process. Run it with
// `make test-browser`; `make screenshots` writes the README's pictures.

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// waitLong bounds every wait in the browser: generous, for a loaded CI
// machine; nothing sleeps a fixed time.
const waitLong = 60 * time.Second

// startConsole runs `agentpdp console` as a child process on a free port
// and returns its URL and the one-time sign-in link it printed.
func startConsole(t *testing.T, d *daemon, users string) (base, link string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "console", "--listen", "127.0.0.1:0", "--db", d.db(), "--admin-socket", d.asock(),
		"--users", users, "--pubkey", filepath.Join(d.dir, "var", "signing.key.pub"), "--operator", "local-operator")
	cmd.Env = append(os.Environ(), "AGENTPDP_TEST_MAIN=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &lockedWriter{w: &strings.Builder{}}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("console's log:\n%s", stderr)
		}
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	urlRE := regexp.MustCompile(`^agentpdp console: (http://\S+)$`)
	linkRE := regexp.MustCompile(`one-time sign-in as local-operator .*: (http://\S+)$`)
	timeout := time.After(waitLong)
	for base == "" || link == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("console exited:\n%s", stderr)
			}
			if m := urlRE.FindStringSubmatch(line); m != nil {
				base = m[1]
			}
			if m := linkRE.FindStringSubmatch(line); m != nil {
				link = m[1]
			}
		case <-timeout:
			t.Fatalf("console printed no URL and link:\n%s", stderr)
		}
	}
	go func() {
		for range lines { // drain
		}
	}()
	return base, link
}

// newBrowser starts headless Chromium with a fresh profile.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	exe, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed: run .ci/setup-browser.sh (%v)", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// Start the browser now, so that a browser that cannot start fails here.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// within runs actions with the generous timeout.
func within(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, waitLong)
	defer cancel()
	if err := chromedp.Do(tctx, actions...); err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		t.Fatalf("%s: %v\nat %s:\n%s", what, err, loc, body)
	}
}

func runIn[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, waitLong)
	defer cancel()
	v, err := chromedp.Run(tctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// shots writes screenshots where AGENTPDP_SCREENSHOTS points (make
// screenshots: docs/console), else into the test's temporary directory.
type shots struct {
	t   *testing.T
	dir string
}

func (s shots) take(ctx context.Context, name string) {
	s.t.Helper()
	checkLabels(s.t, ctx, name)
	png := runIn(s.t, ctx, "screenshot "+name, chromedp.CaptureScreenshot())
	if err := os.WriteFile(filepath.Join(s.dir, name+".png"), png, 0o644); err != nil {
		s.t.Fatal(err)
	}
}

func TestConsole_Browser(t *testing.T) {
	d := newDaemonDir(t)
	appendConfig(t, d, "checkpoints: {every_rows: 4, every: 1m}\n") // so that the integrity page has some
	d.start()
	users := filepath.Join(d.dir, "users")
	var out, errb strings.Builder
	if code := run(t.Context(), []string{"console", "add-user", "alice", "--users", users}, strings.NewReader("alice's long password\n"), &out, &errb); code != 0 {
		t.Fatalf("console add-user: exit %d: %s", code, errb.String())
	}
	base, link := startConsole(t, d, users)
	sh := shots{t: t, dir: os.Getenv("AGENTPDP_SCREENSHOTS")}
	if sh.dir == "" {
		sh.dir = t.TempDir()
	} else if err := os.MkdirAll(sh.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	agent := client.New(d.sock())
	defer agent.Close()

	// Without a session every page is refused: a redirect to the sign-in
	// form for pages, 401 for the live stream, 403 for any POST.
	plain := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, p := range []string{"/", "/approvals", "/approvals/live", "/search", "/integrity", "/decisions/x", "/decisions/x/chain"} {
		resp, err := plain.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
			t.Errorf("GET %s without a session: %d %s, want 303 to /login", p, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	for _, p := range []string{"/decisions/x/approval", "/integrity/verify", "/logout"} {
		resp, err := plain.PostForm(base+p, url.Values{"decision": {"approve"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s without a session: %d, want 403", p, resp.StatusCode)
		}
	}

	ctx := newBrowser(t)

	// The browser too lands on the sign-in form.
	within(t, ctx, "a page without a session",
		chromedp.Navigate(base+"/integrity"),
		chromedp.WaitVisible(chromedp.ID("password")),
	)
	if loc := runIn(t, ctx, "location", chromedp.Location()); !strings.HasPrefix(loc, base+"/login?next=") {
		t.Errorf("without a session, /integrity led to %s", loc)
	}
	sh.take(ctx, "login")

	// Sign in.
	within(t, ctx, "sign in",
		chromedp.SendKeys(chromedp.ID("username"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), "alice's long password"),
		chromedp.Click(chromedp.CSS(`form.login button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("signed-in-user")),
	)
	if who := runIn(t, ctx, "who", chromedp.Text(chromedp.ID("signed-in-user"))); who != "alice" {
		t.Fatalf("signed in as %q", who)
	}

	// The waiting list, open before the agent asks.
	within(t, ctx, "open approvals",
		chromedp.Navigate(base+"/approvals"),
		chromedp.WaitReady(chromedp.ID("pending")),
	)
	runIn(t, ctx, "live stream open", chromedp.Poll[chromedp.Void](`document.body.dataset.live === "on"`, chromedp.WithPollingTimeout(waitLong)))
	runIn(t, ctx, "mark the page", chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`))

	// An agent plans, then asks for a production change: step_up.
	parent, err := agent.Authorize(t.Context(), &wire.Request{Principal: mustRef(t, `Agent::"billing-bot"`), Action: mustRef(t, `Action::"invoke_tool"`),
		Resource: mustRef(t, `Tool::"sql.query"`), TraceID: "trace-browser-1"})
	if err != nil {
		t.Fatal(err)
	}
	req := &wire.Request{Principal: mustRef(t, `Agent::"deploy-bot"`), Action: mustRef(t, `Action::"invoke_tool"`), Resource: mustRef(t, `Tool::"k8s.apply"`),
		Context: json.RawMessage(`{"args":{"manifest":"web.yaml","replicas":3}}`), TraceID: "trace-browser-1", ParentDecisionID: parent.DecisionID,
		OnBehalfOf: "dana@example.com", SessionID: "sess-7"}
	step, err := agent.Authorize(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if step.Decision != wire.StepUp {
		t.Fatalf("the agent's request: %s, want step_up", step.Decision)
	}

	// It appears without a reload.
	item := "#p-" + step.DecisionID
	within(t, ctx, "the step-up appears live", chromedp.WaitVisible(chromedp.CSS(item)))
	if ok := runIn(t, ctx, "still the same page", chromedp.Evaluate[bool](`window.notReloaded === true`)); !ok {
		t.Error("the page was reloaded to show the step-up")
	}
	text := runIn(t, ctx, "item text", chromedp.Text(chromedp.CSS(item)))
	for _, want := range []string{"production change needs approval", "deploy-bot", "k8s.apply", "attested", "web.yaml", "prod-writes-need-approval", "left"} {
		if !strings.Contains(text, want) {
			t.Errorf("the waiting step-up does not show %q:\n%s", want, text)
		}
	}
	// The sources are the ones the row records, not the console's reading.
	if strings.Contains(text, "written before decisions recorded") {
		t.Errorf("the waiting step-up calls its own row old:\n%s", text)
	}
	within(t, ctx, "type a comment", chromedp.SendKeys(chromedp.CSS(item+" textarea"), "CHG-4711 reviewed"),
		chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
	sh.take(ctx, "approvals")

	// A POST without the CSRF token is refused, even with the session.
	status := runIn(t, ctx, "POST without CSRF", chromedp.Evaluate[int](fmt.Sprintf(
		`fetch("/decisions/%s/approval", {method: "POST", body: new URLSearchParams({decision: "approve", comment: "no token"})}).then(r => r.status)`,
		step.DecisionID), chromedp.EvalAwaitPromise))
	if status != http.StatusForbidden {
		t.Errorf("POST without the CSRF token: %d, want 403", status)
	}
	if n := approvalsOf(t, d.db(), step.DecisionID); len(n) != 0 {
		t.Fatalf("a POST without the CSRF token recorded %+v", n)
	}

	// Approve.
	within(t, ctx, "approve",
		chromedp.Click(chromedp.CSS(item+" button.approve")),
		chromedp.WaitVisible(chromedp.CSS("p.flash")),
	)
	if loc := runIn(t, ctx, "location", chromedp.Location()); !strings.HasPrefix(loc, base+"/decisions/"+step.DecisionID) {
		t.Errorf("after approving: at %s", loc)
	}
	recorded := approvalsOf(t, d.db(), step.DecisionID)
	if len(recorded) != 1 || recorded[0].Approver != "alice" || !recorded[0].Approved || recorded[0].Comment != "CHG-4711 reviewed" {
		t.Fatalf("the approval recorded: %+v, want approved by alice with the comment", recorded)
	}
	within(t, ctx, "scroll to the approvals", chromedp.ScrollIntoView(chromedp.ID("appr-h")))
	if who := runIn(t, ctx, "approver shown", chromedp.Text(chromedp.CSS("td.approver"))); who != "alice" {
		t.Errorf("the decision page names %q as approver", who)
	}
	within(t, ctx, "back to the top", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
	sh.take(ctx, "decision")

	// The agent's retry with the approval is allowed, and names alice.
	retryReq := *req
	retryReq.Approval = step.DecisionID
	retry, err := agent.Authorize(t.Context(), &retryReq)
	if err != nil {
		t.Fatal(err)
	}
	if retry.Decision != wire.Allow {
		t.Fatalf("the retry: %s, want allow (%+v)", retry.Decision, retry.Reasons)
	}
	within(t, ctx, "the retry names the approver",
		chromedp.Navigate(base+"/decisions/"+retry.DecisionID),
		chromedp.WaitVisible(chromedp.CSS("strong.approver")),
	)
	if who := runIn(t, ctx, "retry's approver", chromedp.Text(chromedp.CSS("strong.approver"))); who != "alice" {
		t.Errorf("the retry was allowed by an approval of %q", who)
	}

	// Search finds the decision, by the form, at a shareable URL.
	within(t, ctx, "search",
		chromedp.Navigate(base+"/search"),
		chromedp.WaitVisible(chromedp.ID("f-principal")),
		chromedp.SendKeys(chromedp.ID("f-principal"), "deploy-bot"),
		chromedp.SetValue(chromedp.ID("f-decision"), "step_up"),
	)
	// The page before the click lists every decision: wait for the
	// search's own page to load before reading results.
	submitted := runIn(t, ctx, "search submitted", func(ctx context.Context, tg *chromedp.Target) (int64, error) {
		resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`form.search button[type="submit"]`)))
		if err != nil {
			return 0, err
		}
		return resp.Status, nil
	})
	if submitted != http.StatusOK {
		t.Errorf("search: HTTP %d", submitted)
	}
	within(t, ctx, "search results", chromedp.WaitVisible(chromedp.CSS(`table.results a[href="/decisions/`+step.DecisionID+`"]`)))
	if loc := runIn(t, ctx, "search URL", chromedp.Location()); !strings.Contains(loc, "principal=deploy-bot") || !strings.Contains(loc, "decision=step_up") {
		t.Errorf("the search's URL %s does not hold its filters", loc)
	}
	rows := runIn(t, ctx, "result rows", chromedp.Evaluate[int](`document.querySelectorAll("table.results tbody tr").length`))
	if rows != 1 {
		t.Errorf("search for deploy-bot's step-ups: %d rows, want 1", rows)
	}
	sh.take(ctx, "search")

	// The chain shows the parent above the step-up, and the retry below it.
	within(t, ctx, "chain",
		chromedp.Navigate(base+"/decisions/"+step.DecisionID+"/chain"),
		chromedp.WaitVisible(chromedp.CSS("ul.tree")),
	)
	order := runIn(t, ctx, "chain order", chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll("ul.tree .node > a")).map(a => a.getAttribute("href"))`))
	want := []string{"/decisions/" + parent.DecisionID, "/decisions/" + step.DecisionID, "/decisions/" + retry.DecisionID}
	if strings.Join(order, " ") != strings.Join(want, " ") {
		t.Errorf("chain nodes %v, want %v", order, want)
	}
	nested := runIn(t, ctx, "nesting", chromedp.Evaluate[bool](fmt.Sprintf(
		`!!document.querySelector('ul.tree > li > ul > li.focus > ul > li > .node > a[href="/decisions/%s"]')`, retry.DecisionID)))
	if !nested {
		t.Error("the chain does not nest parent > step-up > retry")
	}
	sh.take(ctx, "chain")

	// Integrity: verify now.
	within(t, ctx, "integrity",
		chromedp.Navigate(base+"/integrity"),
		chromedp.Click(chromedp.CSS(`form[action="/integrity/verify"] button`)),
		chromedp.WaitVisible(chromedp.CSS("#verify-h + p.ok")),
	)
	verified := runIn(t, ctx, "checkpoint signatures", chromedp.Evaluate[int](`document.querySelectorAll("#cp-h ~ table tbody td .ok").length`))
	if verified == 0 {
		t.Error("the integrity page shows no checkpoint whose signature verified")
	}
	sh.take(ctx, "integrity")

	// Overview, with some denials to show.
	for _, tool := range []string{"invoices.export", "invoices.export", "k8s.apply-staging"} {
		if _, err := agent.Authorize(t.Context(), &wire.Request{Principal: mustRef(t, `Agent::"billing-bot"`), Action: mustRef(t, `Action::"invoke_tool"`),
			Resource: mustRef(t, `Tool::"`+tool+`"`)}); err != nil {
			t.Fatal(err)
		}
	}
	within(t, ctx, "overview",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("svg.chart")),
	)
	if top := runIn(t, ctx, "top denied", chromedp.Text(chromedp.CSS("#topp-h + table.bars"))); !strings.Contains(top, `Agent::"billing-bot"`) {
		t.Errorf("the overview's most denied principals: %q", top)
	}
	sh.take(ctx, "overview")

	// At phone width, a new step-up is still readable and answerable.
	again, err := agent.Authorize(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	within(t, ctx, "phone width",
		chromedp.EmulateViewport(390, 844),
		chromedp.Navigate(base+"/approvals"),
		chromedp.WaitVisible(chromedp.CSS("#p-"+again.DecisionID+" button.approve")),
	)
	overflow := runIn(t, ctx, "no sideways scroll", chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`))
	if overflow {
		t.Error("at 390 px wide the approvals page scrolls sideways")
	}
	sh.take(ctx, "approvals-phone")

	// The one-time link works once, in a browser of its own.
	other := newBrowser(t)
	within(t, other, "one-time link",
		chromedp.Navigate(link),
		chromedp.WaitVisible(chromedp.ID("signed-in-user")),
	)
	if who := runIn(t, other, "operator", chromedp.Text(chromedp.ID("signed-in-user"))); who != "local-operator" {
		t.Errorf("the link signed in as %q", who)
	}
	resp, err := plain.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("the link used a second time: %d, want 403", resp.StatusCode)
	}
}

// checkLabels fails the test for a form control a screen reader could not
// name, or a page without a main landmark and one h1.
func checkLabels(t *testing.T, ctx context.Context, page string) {
	t.Helper()
	bad := runIn(t, ctx, "labels on "+page, chromedp.Evaluate[[]string](`
		Array.from(document.querySelectorAll("input:not([type=hidden]), textarea, select, button"))
			.filter(el => el.tagName === "BUTTON" ? !el.textContent.trim() && !el.getAttribute("aria-label") : el.labels.length === 0 && !el.getAttribute("aria-label"))
			.map(el => el.outerHTML.slice(0, 80))
			.concat(document.querySelectorAll("main").length === 1 ? [] : ["no single main landmark"])
			.concat(document.querySelectorAll("h1").length === 1 ? [] : ["not one h1"])`))
	for _, b := range bad {
		t.Errorf("%s: not named for a screen reader: %s", page, b)
	}
}

func mustRef(t *testing.T, s string) wire.EntityRef {
	t.Helper()
	r, err := wire.ParseEntityRef(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func approvalsOf(t *testing.T, db, id string) []wire.ApprovalRecord {
	t.Helper()
	r, err := decisionlog.OpenReader(db)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	es, err := r.Query(t.Context(), decisionlog.Filter{Kinds: []decisionlog.Kind{decisionlog.KindApproval}, DecisionID: id})
	if err != nil {
		t.Fatal(err)
	}
	var out []wire.ApprovalRecord
	for _, e := range es {
		var a wire.ApprovalRecord
		if err := json.Unmarshal(e.Body, &a); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}
