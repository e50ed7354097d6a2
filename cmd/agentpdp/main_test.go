package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/wire"
	"github.com/agentpdp/agentpdp/plugins"
)

type hangingProvider struct{}

func (hangingProvider) Entities(ctx context.Context, _ *wire.Request) ([]wire.Entity, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestMain lets a test re-exec its own binary as the agentpdp command, so
// cross-process tests run the real daemon without building it separately.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "agentpdp-test-provider" {
		// A plugin that never answers: run by the daemon in the tests.
		plugins.ServeEntityProvider(hangingProvider{})
		os.Exit(0)
	}
	if os.Getenv("AGENTPDP_TEST_MAIN") == "1" {
		ctx, stop := signalContext()
		code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	if os.Getenv("AGENTPDP_TEST_MCP_SERVER") == "1" {
		testMCPServer()
		os.Exit(0)
	}
	before := dirNames(".")
	code := m.Run()
	// Tests write only to temporary directories: a test that left a file
	// here (a ./var from a default path, say) fails the package.
	for name := range dirNames(".") {
		if !before[name] {
			fmt.Fprintf(os.Stderr, "FAIL: the tests left %s in the package directory; write to t.TempDir()\n", name)
			code = 1
		}
	}
	os.Exit(code)
}

func dirNames(dir string) map[string]bool {
	names := map[string]bool{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		names[e.Name()] = true
	}
	return names
}

// runCLI runs the command in-process.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(t.Context(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// daemon is agentpdp serve running as a child process.
type daemon struct {
	t      *testing.T
	dir    string
	config string
	cmd    *exec.Cmd
	stderr *lockedWriter // the daemon's stderr; read it only through its String
	done   chan error
}

// newDaemonDir lays out a config serving a copy of the default pack. Paths
// are short: sockets must fit sun_path.
func newDaemonDir(t *testing.T) *daemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "apdp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.CopyFS(filepath.Join(dir, "policies"), os.DirFS("../../policies")); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "agentpdp.yaml")
	yaml := fmt.Sprintf("policies: %[1]s/policies\ndb: %[1]s/var/decisions.db\nsocket: %[1]s/var/a.sock\nadmin_socket: %[1]s/var/admin.sock\nhmac_key: %[1]s/var/hmac.key\nsigning_key: %[1]s/var/signing.key\nlog: {level: debug}\n", dir)
	if err := os.WriteFile(config, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return &daemon{t: t, dir: dir, config: config}
}

func (d *daemon) sock() string  { return filepath.Join(d.dir, "var", "a.sock") }
func (d *daemon) asock() string { return filepath.Join(d.dir, "var", "admin.sock") }
func (d *daemon) db() string    { return filepath.Join(d.dir, "var", "decisions.db") }

func (d *daemon) start() {
	d.t.Helper()
	d.cmd = exec.Command(os.Args[0], "serve", "--config", d.config)
	d.cmd.Env = append(os.Environ(), "AGENTPDP_TEST_MAIN=1")
	d.stderr = &lockedWriter{w: &bytes.Buffer{}}
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	cmd, done := d.cmd, make(chan error, 1)
	d.done = done
	exited := make(chan struct{})
	go func() {
		done <- cmd.Wait()
		close(exited)
	}()
	// Stopped as an operator would, with SIGTERM, so that it stops its
	// plugins on the way out: a SIGKILL left them running, orphaned (every
	// run of TestServe_HangingProviderDenies left a provider behind).
	// SIGKILL only if it has not exited in time.
	d.t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("unix", d.sock()); err == nil {
			c.Close()
			return
		}
		select {
		case err := <-d.done:
			d.t.Fatalf("daemon exited: %v\n%s", err, d.stderr)
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("daemon did not listen:\n%s", d.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.(fmt.Stringer).String()
}

var tools = []string{"sql.query", "k8s.apply", "invoices.export", "web.search", "k8s.apply-staging"}
var agents = []string{"billing-bot", "deploy-bot", "intern-bot", "scraper"}

// load runs clients against the daemon until stop is closed or the daemon
// stops answering, and returns every decision it was answered.
func load(t *testing.T, sock string, clients int, stop <-chan struct{}) []*wire.Decision {
	return loadCounting(t, sock, clients, stop, nil)
}

// loadCounting is load, calling answer (if not nil) after each answer with
// the number answered so far.
func loadCounting(t *testing.T, sock string, clients int, stop <-chan struct{}, answer func(n int)) []*wire.Decision {
	var mu sync.Mutex
	var answered []*wire.Decision
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			cl := client.New(sock)
			defer cl.Close()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				req := &wire.Request{
					Principal: wire.EntityRef{Type: "Agent", ID: agents[(c+i)%len(agents)]},
					Action:    wire.EntityRef{Type: "Action", ID: "invoke_tool"},
					Resource:  wire.EntityRef{Type: "Tool", ID: tools[i%len(tools)]},
					SessionID: fmt.Sprintf("s-%d", c),
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				d, err := cl.Authorize(ctx, req)
				cancel()
				if err != nil {
					return // the daemon is gone; what it answered is what counts
				}
				mu.Lock()
				answered = append(answered, d)
				n := len(answered)
				mu.Unlock()
				if answer != nil {
					answer(n)
				}
			}
		})
	}
	wg.Wait()
	return answered
}

// startLoad runs load in the background; finish stops it and returns what
// was answered. It returns once each client could have had an answer (at
// least clients answers, or the load ended, or 30 s), so that a test's
// "run for a while" is never spent before the daemon answered at all on a
// slow machine.
func startLoad(t *testing.T, sock string, clients int) (finish func() []*wire.Decision) {
	stop := make(chan struct{})
	var answered []*wire.Decision
	done := make(chan struct{})
	running := make(chan struct{})
	var once sync.Once
	go func() {
		answered = loadCounting(t, sock, clients, stop, func(n int) {
			if n >= clients {
				once.Do(func() { close(running) })
			}
		})
		close(done)
	}()
	select {
	case <-running:
	case <-done:
	case <-time.After(30 * time.Second):
	}
	return func() []*wire.Decision {
		close(stop)
		<-done
		return answered
	}
}

// checkLogged opens the log read-only and checks every answered decision is
// in it, with the seq and decision it was answered with.
func checkLogged(t *testing.T, db string, answered []*wire.Decision) {
	t.Helper()
	code, out, errOut := runCLI(t, "log", "export", "--db", db, "--kind", "decision")
	if code != 0 {
		t.Fatalf("log export: %d %s", code, errOut)
	}
	logged := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var row struct {
			Seq        int64  `json:"seq"`
			DecisionID string `json:"decision_id"`
			Decision   string `json:"decision"`
		}
		if err := jsonUnmarshal(line, &row); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		logged[row.DecisionID] = fmt.Sprintf("%d %s", row.Seq, row.Decision)
	}
	for _, d := range answered {
		if got, want := logged[d.DecisionID], fmt.Sprintf("%d %s", d.Seq, d.Decision); got != want {
			t.Errorf("answered %s as %q, log has %q", d.DecisionID, want, got)
		}
	}
}

func TestServe_KillNineLosesNothingAnswered(t *testing.T) {
	d := newDaemonDir(t)
	d.start()
	finish := startLoad(t, d.sock(), 64)
	time.Sleep(700 * time.Millisecond)
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.done
	answered := finish()
	if len(answered) < 50 {
		t.Fatalf("only %d decisions answered before the kill:\n%s", len(answered), d.stderr)
	}
	t.Logf("%d decisions answered before SIGKILL", len(answered))

	// Restart on the same files: stale sockets are replaced, the log reopens.
	d.start()
	checkLogged(t, d.db(), answered)
	checkChain(t, d.db())
	after, err := client.New(d.sock()).Authorize(t.Context(), &wire.Request{
		Principal: wire.EntityRef{Type: "Agent", ID: "billing-bot"}, Action: wire.EntityRef{Type: "Action", ID: "invoke_tool"},
		Resource: wire.EntityRef{Type: "Tool", ID: "sql.query"}})
	if err != nil {
		t.Fatal(err)
	}
	var maxSeq int64
	for _, a := range answered {
		maxSeq = max(maxSeq, a.Seq)
	}
	if after.Seq <= maxSeq {
		t.Errorf("seq after restart %d does not follow %d", after.Seq, maxSeq)
	}
}

func TestServe_SigtermDrainsAndExits(t *testing.T) {
	d := newDaemonDir(t)
	d.start()
	finish := startLoad(t, d.sock(), 8)
	time.Sleep(300 * time.Millisecond)
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, d.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	answered := finish()
	for _, p := range []string{d.sock(), d.asock()} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("socket %s left behind", p)
		}
	}
	if len(answered) == 0 {
		t.Fatal("nothing answered")
	}
	checkLogged(t, d.db(), answered)
	if !strings.Contains(d.stderr.String(), "agentpdp stopped") {
		t.Errorf("no clean stop in the log:\n%s", d.stderr)
	}
}

func TestServe_SighupReloads(t *testing.T) {
	d := newDaemonDir(t)
	d.start()
	cl := client.New(d.sock())
	before, err := cl.Health(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// Append a policy, then ask for a reload by signal.
	f, err := os.OpenFile(filepath.Join(d.dir, "policies", "agents.cedar"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, "\n// touched by the test")
	f.Close()
	d.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for {
		after, err := cl.Health(t.Context())
		if err == nil && after != before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("version still %s:\n%s", before, d.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestServe_RefusesBrokenPolicies(t *testing.T) {
	d := newDaemonDir(t)
	if err := os.WriteFile(filepath.Join(d.dir, "policies", "broken.cedar"), []byte("permit (principal,"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "serve", "--config", d.config)
	if code != exitFail || !strings.Contains(stderr, "broken.cedar:1") {
		t.Errorf("got %d %q, want exit 1 naming broken.cedar:1", code, stderr)
	}
}

// TestServe_EditUnderLoad edits a policy while clients keep asking: the
// decision changes, and no request fails meanwhile. The time the change took
// is logged, not asserted: speed is for benchmarks.
func TestServe_EditUnderLoad(t *testing.T) {
	d := newDaemonDir(t)
	d.start()
	req := &wire.Request{
		Principal: wire.EntityRef{Type: "Agent", ID: "billing-bot"},
		Action:    wire.EntityRef{Type: "Action", ID: "invoke_tool"},
		Resource:  wire.EntityRef{Type: "Tool", ID: "sql.query"},
	}
	var failures atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			cl := client.New(d.sock())
			defer cl.Close()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := cl.Authorize(context.Background(), req); err != nil {
					failures.Add(1)
					t.Errorf("request failed during the edit: %v", err)
				}
			}
		})
	}
	cl := client.New(d.sock())
	if dec, err := cl.Authorize(t.Context(), req); err != nil || dec.Decision != wire.Allow {
		t.Fatalf("before the edit: %v %v", dec, err)
	}
	// Save the way editors do: write a temporary file, rename it into place.
	path := filepath.Join(d.dir, "policies", "agents.cedar")
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	edited := string(old) + "\n@id(\"sql-frozen\")\nforbid (principal, action, resource == Tool::\"sql.query\");\n"
	must(t, os.WriteFile(path+".tmp", []byte(edited), 0o644))
	start := time.Now()
	must(t, os.Rename(path+".tmp", path))
	for {
		dec, err := cl.Authorize(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		if dec.Decision == wire.Deny && dec.Reasons[0].Policy == "sql-frozen" {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("edit not served after 10s:\n%s", d.stderr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("edit served after %v", time.Since(start).Round(time.Millisecond))
	close(stop)
	wg.Wait()
	if failures.Load() > 0 {
		t.Errorf("%d requests failed", failures.Load())
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
