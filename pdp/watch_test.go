package pdp_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp"
)

const (
	permitAll = "@id(\"open\")\npermit (principal, action, resource);\n"
	forbidAll = "@id(\"closed\")\nforbid (principal, action, resource);\n"
)

// watched starts an engine with a real log and a running watcher on dir.
func watched(t *testing.T, dir string) (*pdp.Engine, *pdp.Watcher, *decisionlog.Log) {
	t.Helper()
	log := openLog(t)
	e, err := pdp.NewEngine(pdp.Options{Policies: dir, Recorder: log, Key: testKey, Prompt: pdp.PromptDrop})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Reload(t.Context(), "startup"); err != nil {
		t.Fatal(err)
	}
	w := pdp.NewWatcher(e, 20*time.Millisecond, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(ctx); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	// Let the watcher set its watches before the test changes anything.
	if _, err := w.Reload(t.Context(), "sync"); err != nil {
		t.Fatal(err)
	}
	return e, w, log
}

func decideFor(t *testing.T, e *pdp.Engine) string {
	t.Helper()
	d, err := e.Evaluate(mustRequest(t, `{`+okRefs+`}`))
	if err != nil {
		t.Fatal(err)
	}
	return d.Decision
}

// eventually polls cond for up to 5s: fsnotify is asynchronous.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWatcher_RenameSave(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"p.cedar": permitAll})
	e, _, _ := watched(t, dir)
	// Editors write a temporary file and rename it over the original.
	writeFiles(t, dir, map[string]string{".p.cedar.swp": forbidAll})
	if err := os.Rename(filepath.Join(dir, ".p.cedar.swp"), filepath.Join(dir, "p.cedar")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deny after the save", func() bool { return decideFor(t, e) == pdp.Deny })
}

func TestWatcher_BrokenFileKeepsServing(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"p.cedar": permitAll})
	e, _, _ := watched(t, dir)
	before := e.Snapshot().Version
	writeFiles(t, dir, map[string]string{"p.cedar": "permit (principal,"})
	eventually(t, "the reload error in status", func() bool { return e.Status().LastReloadError != "" })
	st := e.Status()
	if !strings.Contains(st.LastReloadError, "p.cedar:1") || st.ReloadFailures == 0 {
		t.Errorf("status: %+v", st)
	}
	if e.Snapshot().Version != before || decideFor(t, e) != pdp.Allow {
		t.Error("a broken file replaced the serving policies")
	}
	writeFiles(t, dir, map[string]string{"p.cedar": forbidAll})
	eventually(t, "the fixed file", func() bool { return decideFor(t, e) == pdp.Deny })
	if e.Status().LastReloadError != "" {
		t.Error("reload error not cleared after a good load")
	}
}

func TestWatcher_AddRemoveAndNewDirectory(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"p.cedar": permitAll})
	e, _, _ := watched(t, dir)
	if err := os.MkdirAll(filepath.Join(dir, "teams", "finance"), 0o755); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the new directory be watched first
	writeFiles(t, dir, map[string]string{"teams/finance/f.cedar": forbidAll})
	eventually(t, "the file in the new directory", func() bool { return decideFor(t, e) == pdp.Deny })
	if err := os.RemoveAll(filepath.Join(dir, "teams")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the removal", func() bool { return decideFor(t, e) == pdp.Allow })
	if n := len(e.Snapshot().Policies); n != 1 {
		t.Errorf("%d policies after removal", n)
	}
}

func TestWatcher_KubernetesDataSwap(t *testing.T) {
	// A ConfigMap volume: files are links into ..data, itself a link to a
	// timestamped directory that is replaced by an atomic rename.
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"..v1/p.cedar": permitAll, "..v2/p.cedar": forbidAll})
	must(t, os.Symlink("..v1", filepath.Join(dir, "..data")))
	must(t, os.Symlink("..data/p.cedar", filepath.Join(dir, "p.cedar")))
	e, _, _ := watched(t, dir)
	if decideFor(t, e) != pdp.Allow {
		t.Fatal("v1 not served")
	}
	must(t, os.Symlink("..v2", filepath.Join(dir, "..data_tmp")))
	must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	eventually(t, "v2 after the ..data swap", func() bool { return decideFor(t, e) == pdp.Deny })
}

func TestWatcher_DirectorySymlinkSwap(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"v1/p.cedar": permitAll, "v2/p.cedar": forbidAll})
	current := filepath.Join(root, "current")
	must(t, os.Symlink("v1", current))
	e, _, _ := watched(t, current)
	must(t, os.Symlink("v2", filepath.Join(root, "next")))
	must(t, os.Rename(filepath.Join(root, "next"), current))
	eventually(t, "v2 after the directory swap", func() bool { return decideFor(t, e) == pdp.Deny })
	// And edits in the new target are watched.
	writeFiles(t, root, map[string]string{"v2/p.cedar": permitAll})
	eventually(t, "an edit inside the new target", func() bool { return decideFor(t, e) == pdp.Allow })
}

func TestWatcher_ForcedReloadAndPolicyLoadRows(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"p.cedar": permitAll})
	e, w, log := watched(t, dir)
	changed, err := w.Reload(t.Context(), "api")
	if err != nil || changed {
		t.Errorf("reload of an unchanged directory: changed=%v err=%v", changed, err)
	}
	writeFiles(t, dir, map[string]string{"q.cedar": forbidAll})
	changed, err = w.Reload(t.Context(), "api")
	if err != nil || !changed {
		t.Errorf("reload after a change: changed=%v err=%v", changed, err)
	}
	es, err := log.Query(t.Context(), decisionlog.Filter{Kinds: []decisionlog.Kind{decisionlog.KindPolicyLoad}})
	if err != nil {
		t.Fatal(err)
	}
	// A load per distinct version, no matter how often the watcher reloaded.
	versions := map[string]bool{}
	for _, entry := range es {
		var rec pdp.PolicyLoadRecord
		if err := json.Unmarshal(entry.Body, &rec); err != nil {
			t.Fatal(err)
		}
		if versions[rec.PolicyVersion] {
			t.Errorf("version %s logged twice", rec.PolicyVersion)
		}
		versions[rec.PolicyVersion] = true
	}
	if !versions[e.Snapshot().Version] {
		t.Fatal("serving version has no policy-load row")
	}
	entry, err := log.PolicyLoad(t.Context(), e.Snapshot().Version)
	if err != nil {
		t.Fatal(err)
	}
	var rec pdp.PolicyLoadRecord
	if err := json.Unmarshal(entry.Body, &rec); err != nil {
		t.Fatal(err)
	}
	if len(rec.Files) != 2 || rec.Files[1].Content != forbidAll || rec.Trigger != "api" {
		t.Errorf("policy load row does not hold the files: %+v", rec)
	}
}

// TestWatcher_DecisionsDuringReloads flips the policies between two versions
// while deciding: every decision must be the one its logged version makes.
func TestWatcher_DecisionsDuringReloads(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"p.cedar": permitAll})
	e, w, _ := watched(t, dir)
	allowVersion := e.Snapshot().Version
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			content := permitAll
			if i%2 == 0 {
				content = forbidAll
			}
			writeFiles(t, dir, map[string]string{"p.cedar": content})
			w.Reload(ctx, "test")
		}
	})
	var allowed, denied atomic.Int64
	for range 4 {
		wg.Go(func() {
			for range 300 {
				d, err := e.Decide(t.Context(), mustRequest(t, `{`+okRefs+`}`), nil)
				if err != nil {
					t.Error(err)
					return
				}
				if (d.PolicyVersion == allowVersion) != (d.Decision == pdp.Allow) {
					t.Errorf("decision %s with version %s", d.Decision, d.PolicyVersion)
				}
				if d.Decision == pdp.Allow {
					allowed.Add(1)
				} else {
					denied.Add(1)
				}
			}
		})
	}
	for allowed.Load()+denied.Load() < 1200 && !t.Failed() {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	if allowed.Load() == 0 || denied.Load() == 0 {
		t.Errorf("decisions did not see both versions: %d allowed, %d denied", allowed.Load(), denied.Load())
	}
	if e.Status().Reloads < 10 {
		t.Errorf("only %d reloads happened", e.Status().Reloads)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
