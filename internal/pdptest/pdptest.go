// Package pdptest holds what the tests of several packages share: policy
// files written to a temp dir, a daemon (engine, log, watcher and server on
// fresh sockets) run for one test, and a log filled with decisions.
package pdptest

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/reload"
	"github.com/agentpdp/agentpdp/pdp/server"
	"github.com/agentpdp/agentpdp/pdp/wire"
	"github.com/agentpdp/agentpdp/plugins"
	"github.com/agentpdp/agentpdp/plugins/shipper"
)

// WriteFiles writes name → content under dir, creating subdirectories.
func WriteFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestKey is the HMAC key of engines that record.
var TestKey = []byte("0123456789abcdef0123456789abcdef")

// Eventually polls cond for up to 5s: fsnotify is asynchronous.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Daemon is an engine, its log and a server on fresh sockets, with clients.
type Daemon struct {
	Engine       *pdp.Engine
	Log          *decisionlog.Log
	Agent, Admin *client.Client
	Sock, Asock  string
	Dir          string
	Stop         func()
}

// Serve runs a real server on fresh sockets, with a real log, until the
// test ends. Socket paths are kept short: sun_path holds 108 bytes.
func Serve(t *testing.T, files map[string]string) *Daemon {
	t.Helper()
	return ServeWith(t, files, decisionlog.DurabilityFull, nil)
}

// ServeB is Serve for a benchmark, with one policy file and a durability.
func ServeB(b *testing.B, policies string, durability decisionlog.Durability) *Daemon {
	b.Helper()
	// The benchmark's requests describe their principal inline, as clients
	// did before the trust boundary: request_entities trusted keeps the
	// figures comparable with those from before it.
	return ServeWith(b, map[string]string{"bench.cedar": policies}, durability, func(o *pdp.Options) {
		o.Trust.RequestEntities = pdp.RequestEntitiesTrusted
	})
}

// ServeWith is Serve with a durability and a hook to change the engine options.
func ServeWith(t testing.TB, files map[string]string, durability decisionlog.Durability, tune func(*pdp.Options)) *Daemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "apdp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	WriteFiles(t, filepath.Join(dir, "policies"), files)
	log, err := decisionlog.Open(t.Context(), filepath.Join(dir, "d.db"), decisionlog.Options{Durability: durability})
	if err != nil {
		t.Fatal(err)
	}
	opts := pdp.Options{Policies: filepath.Join(dir, "policies"), Recorder: log, Log: log, Key: TestKey, Prompt: pdp.PromptDrop}
	if tune != nil {
		tune(&opts)
	}
	e, err := pdp.NewEngine(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadNow(t.Context(), e, "startup"); err != nil {
		t.Fatal(err)
	}
	d := &Daemon{Engine: e, Log: log, Dir: dir, Sock: filepath.Join(dir, "a.sock"), Asock: filepath.Join(dir, "admin.sock")}
	w := NewReloader(e, opts.Policies, 0)
	srv, err := server.New(server.Options{Socket: d.Sock, AdminSocket: d.Asock, Engine: e, Log: log, Reloader: w, MaxBodyBytes: 64 << 10,
		ReadHeaderTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { w.Run(ctx) })
	wg.Go(func() {
		if err := srv.Serve(ctx); err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	d.Stop = sync.OnceFunc(func() {
		cancel()
		wg.Wait()
		log.Close(context.Background())
	})
	t.Cleanup(d.Stop)
	for _, p := range []string{d.Sock, d.Asock} {
		Eventually(t, "socket "+p, func() bool {
			c, err := net.Dial("unix", p)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	}
	d.Agent, d.Admin = client.New(d.Sock), client.New(d.Asock)
	t.Cleanup(d.Agent.Close)
	t.Cleanup(d.Admin.Close)
	return d
}

// Ref parses a Cedar entity reference, Agent::"a"; it panics on a bad one.
func Ref(s string) wire.EntityRef {
	r, err := wire.ParseEntityRef(s)
	if err != nil {
		panic(err)
	}
	return r
}

// Request is principal invoking Tool::"t".
func Request(principal string) *wire.Request {
	return &wire.Request{Principal: Ref(`Agent::"` + principal + `"`), Action: Ref(`Action::"invoke_tool"`), Resource: Ref(`Tool::"t"`)}
}

// AgentPolicies permit everyone but Agent::"mallory", as @id("not-mallory").
const AgentPolicies = `@id("not-mallory")
permit (principal, action, resource) unless { principal == Agent::"mallory" };`

// LogWith writes n decisions (seq 1 to n) and returns the log's path and origin.
func LogWith(t *testing.T, n int) (string, string) {
	t.Helper()
	return LogWithInto(t, filepath.Join(t.TempDir(), "d.db"), n)
}

// LogWithInto appends n decisions to the log at path.
func LogWithInto(t *testing.T, path string, n int) (string, string) {
	t.Helper()
	l, err := decisionlog.Open(t.Context(), path, decisionlog.Options{Durability: decisionlog.DurabilityNormal})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		body := fmt.Sprintf(`{"decision_id":"d-%d","decision":"allow","principal":"Agent::\"a\""}`, i)
		if err := l.Append(t.Context(), &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: json.RawMessage(body)}); err != nil {
			t.Fatal(err)
		}
	}
	origin := l.Origin()
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	return path, origin
}

// Shipper feeds sinks from the log at path, polling every 20ms.
func Shipper(t *testing.T, path string, sinks ...plugins.Sink) *shipper.Shipper {
	t.Helper()
	r, err := decisionlog.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := decisionlog.OpenCursors(path)
	if err != nil {
		t.Fatal(err)
	}
	origin, err := r.Origin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); c.Close() })
	s := &shipper.Shipper{Reader: r, Cursors: c, Origin: origin, Interval: 20 * time.Millisecond}
	for _, sink := range sinks {
		s.Targets = append(s.Targets, shipper.Target{Sink: sink, BatchSize: 7})
	}
	return s
}

// TestSchema is a Cedar schema of agents, tools and the invoke_tool action.
const TestSchema = `
entity Agent { trust: String };
entity Tool;
action invoke_tool appliesTo { principal: Agent, resource: Tool };
`

// LoadNow loads and serves the engine's policies at once, as the reload
// component does once the tree is settled.
func LoadNow(ctx context.Context, e *pdp.Engine, trigger string) (bool, error) {
	commit, err := e.Stage()
	if err != nil {
		e.LoadFailed(err)
		return false, err
	}
	return commit(ctx, trigger)
}

// LoadShadowNow is LoadNow for the shadow policies.
func LoadShadowNow(ctx context.Context, e *pdp.Engine, trigger string) (bool, error) {
	commit, err := e.StageShadow()
	if err != nil {
		e.ShadowLoadFailed(err)
		return false, err
	}
	return commit(ctx, trigger)
}

// NewReloader is the reload component over e's policies, as pdp.Open
// builds it.
func NewReloader(e *pdp.Engine, dir string, debounce time.Duration) *reload.Reloader {
	return reload.New(reload.Options{Debounce: debounce, Trees: []reload.Tree{{
		Name: "policies", Dir: dir,
		Load: func(context.Context) (reload.Commit, error) {
			commit, err := e.Stage()
			return commit, err
		},
		Failed:  e.LoadFailed,
		Version: func() string { return e.Snapshot().Version },
	}}})
}

// Record is the logged row of decision id, decoded.
func Record(t testing.TB, log *decisionlog.Log, id string) wire.DecisionRecord {
	t.Helper()
	entry, err := log.Decision(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	var rec wire.DecisionRecord
	if err := json.Unmarshal(entry.Body, &rec); err != nil {
		t.Fatal(err)
	}
	return rec
}

// ChangeLogBehindItsTriggers runs stmts on the decision log at path as
// someone who can write the file would: the append-only trigger
// log_no_update dropped, the statements run, the trigger made again as it
// was, so that only the rows show the change. The log must be closed.
func ChangeLogBehindItsTriggers(t testing.TB, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var trigger string
	if err := db.QueryRow(`SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'log_no_update'`).Scan(&trigger); err != nil {
		t.Fatalf("read the trigger log_no_update: %v", err)
	}
	for _, q := range append(append([]string{`DROP TRIGGER log_no_update`}, stmts...), trigger) {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}
