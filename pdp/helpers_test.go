package pdp_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/reload"
)

// writeFiles writes name → content under dir, creating subdirectories.
func writeFiles(t testing.TB, dir string, files map[string]string) {
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

// newEngine loads files into a fresh directory and an engine without a log.
func newEngine(t *testing.T, files map[string]string, opts pdp.Options) *pdp.Engine {
	t.Helper()
	dir := t.TempDir()
	writeFiles(t, dir, files)
	opts.Policies = dir
	e, err := pdp.NewEngine(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loadNow(t.Context(), e, "test"); err != nil {
		t.Fatalf("load policies: %v", err)
	}
	return e
}

// mustRequest decodes a request as the server would.
func mustRequest(t *testing.T, s string) *pdp.Request {
	t.Helper()
	r, err := pdp.DecodeRequest([]byte(s))
	if err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return r
}

func reasonIDs(rs []pdp.Reason) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.Policy)
	}
	return out
}

func errorIDs(es []pdp.EvalError) []string {
	out := []string{}
	for _, e := range es {
		out = append(out, e.Policy)
	}
	return out
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// testKey is the HMAC key of engines that record.
var testKey = []byte("0123456789abcdef0123456789abcdef")

// loadNow loads and serves the engine's policies at once, as the reload
// component does once the tree is settled.
func loadNow(ctx context.Context, e *pdp.Engine, trigger string) (bool, error) {
	commit, err := e.Stage()
	if err != nil {
		e.LoadFailed(err)
		return false, err
	}
	return commit(ctx, trigger)
}

// loadShadowNow is loadNow for the shadow policies.
func loadShadowNow(ctx context.Context, e *pdp.Engine, trigger string) (bool, error) {
	commit, err := e.StageShadow()
	if err != nil {
		e.ShadowLoadFailed(err)
		return false, err
	}
	return commit(ctx, trigger)
}

// newReloader is the reload component over e's policies, as pdp.Open
// builds it.
func newReloader(e *pdp.Engine, dir string, debounce time.Duration) *reload.Reloader {
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
