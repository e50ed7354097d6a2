package pdp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp/policy"
	"github.com/agentpdp/agentpdp/pdp/wire"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/reload"
)

const (
	permitAll = "@id(\"open\")\npermit (principal, action, resource);\n"
	forbidAll = "@id(\"closed\")\nforbid (principal, action, resource);\n"
)

// watched starts an engine with a real log and a running watcher on dir.
func watched(t *testing.T, dir string) (*pdp.Engine, *reload.Reloader, *decisionlog.Log) {
	t.Helper()
	log := openLog(t)
	e, err := pdp.NewEngine(pdp.Options{Policies: dir, Recorder: log, Key: pdptest.TestKey, Prompt: pdp.PromptDrop})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pdptest.LoadNow(t.Context(), e, "startup"); err != nil {
		t.Fatal(err)
	}
	w := pdptest.NewReloader(e, dir, 20*time.Millisecond)
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
	return string(d.Decision)
}

func TestReload_RenameSave(t *testing.T) {
	dir := t.TempDir()
	pdptest.WriteFiles(t, dir, map[string]string{"p.cedar": permitAll})
	e, _, _ := watched(t, dir)
	// Editors write a temporary file and rename it over the original.
	pdptest.WriteFiles(t, dir, map[string]string{".p.cedar.swp": forbidAll})
	if err := os.Rename(filepath.Join(dir, ".p.cedar.swp"), filepath.Join(dir, "p.cedar")); err != nil {
		t.Fatal(err)
	}
	pdptest.Eventually(t, "deny after the save", func() bool { return wire.Verdict(decideFor(t, e)) == wire.Deny })
}

func TestReload_BrokenFileKeepsServing(t *testing.T) {
	dir := t.TempDir()
	pdptest.WriteFiles(t, dir, map[string]string{"p.cedar": permitAll})
	e, _, _ := watched(t, dir)
	before := e.Snapshot().Version
	pdptest.WriteFiles(t, dir, map[string]string{"p.cedar": "permit (principal,"})
	pdptest.Eventually(t, "the reload error in status", func() bool { return e.Status().LastReloadError != "" })
	st := e.Status()
	if !strings.Contains(st.LastReloadError, "p.cedar:1") || st.ReloadFailures == 0 {
		t.Errorf("status: %+v", st)
	}
	if e.Snapshot().Version != before || wire.Verdict(decideFor(t, e)) != wire.Allow {
		t.Error("a broken file replaced the serving policies")
	}
	pdptest.WriteFiles(t, dir, map[string]string{"p.cedar": forbidAll})
	pdptest.Eventually(t, "the fixed file", func() bool { return wire.Verdict(decideFor(t, e)) == wire.Deny })
	if e.Status().LastReloadError != "" {
		t.Error("reload error not cleared after a good load")
	}
}

func TestReload_AddRemoveAndNewDirectory(t *testing.T) {
	dir := t.TempDir()
	pdptest.WriteFiles(t, dir, map[string]string{"p.cedar": permitAll})
	e, _, _ := watched(t, dir)
	if err := os.MkdirAll(filepath.Join(dir, "teams", "finance"), 0o755); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the new directory be watched first
	pdptest.WriteFiles(t, dir, map[string]string{"teams/finance/f.cedar": forbidAll})
	pdptest.Eventually(t, "the file in the new directory", func() bool { return wire.Verdict(decideFor(t, e)) == wire.Deny })
	if err := os.RemoveAll(filepath.Join(dir, "teams")); err != nil {
		t.Fatal(err)
	}
	pdptest.Eventually(t, "the removal", func() bool { return wire.Verdict(decideFor(t, e)) == wire.Allow })
	if n := len(e.Snapshot().Policies); n != 1 {
		t.Errorf("%d policies after removal", n)
	}
}

func TestReload_KubernetesDataSwap(t *testing.T) {
	// A ConfigMap volume: files are links into ..data, itself a link to a
	// timestamped directory that is replaced by an atomic rename.
	dir := t.TempDir()
	pdptest.WriteFiles(t, dir, map[string]string{"..v1/p.cedar": permitAll, "..v2/p.cedar": forbidAll})
	must(t, os.Symlink("..v1", filepath.Join(dir, "..data")))
	must(t, os.Symlink("..data/p.cedar", filepath.Join(dir, "p.cedar")))
	e, _, _ := watched(t, dir)
	if wire.Verdict(decideFor(t, e)) != wire.Allow {
		t.Fatal("v1 not served")
	}
	must(t, os.Symlink("..v2", filepath.Join(dir, "..data_tmp")))
	must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	pdptest.Eventually(t, "v2 after the ..data swap", func() bool { return wire.Verdict(decideFor(t, e)) == wire.Deny })
}

func TestReload_DirectorySymlinkSwap(t *testing.T) {
	root := t.TempDir()
	pdptest.WriteFiles(t, root, map[string]string{"v1/p.cedar": permitAll, "v2/p.cedar": forbidAll})
	current := filepath.Join(root, "current")
	must(t, os.Symlink("v1", current))
	e, _, _ := watched(t, current)
	must(t, os.Symlink("v2", filepath.Join(root, "next")))
	must(t, os.Rename(filepath.Join(root, "next"), current))
	pdptest.Eventually(t, "v2 after the directory swap", func() bool { return wire.Verdict(decideFor(t, e)) == wire.Deny })
	// And edits in the new target are watched.
	pdptest.WriteFiles(t, root, map[string]string{"v2/p.cedar": permitAll})
	pdptest.Eventually(t, "an edit inside the new target", func() bool { return wire.Verdict(decideFor(t, e)) == wire.Allow })
}

func TestReload_ForcedReloadAndPolicyLoadRows(t *testing.T) {
	dir := t.TempDir()
	pdptest.WriteFiles(t, dir, map[string]string{"p.cedar": permitAll})
	e, w, log := watched(t, dir)
	changed, err := w.Reload(t.Context(), "api")
	if err != nil || changed {
		t.Errorf("reload of an unchanged directory: changed=%v err=%v", changed, err)
	}
	pdptest.WriteFiles(t, dir, map[string]string{"q.cedar": forbidAll})
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

// TestReload_DecisionsDuringReloads flips the policies between two versions
// while deciding: every decision must be the one its logged version makes.
func TestReload_DecisionsDuringReloads(t *testing.T) {
	dir := t.TempDir()
	pdptest.WriteFiles(t, dir, map[string]string{"p.cedar": permitAll})
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
			pdptest.WriteFiles(t, dir, map[string]string{"p.cedar": content})
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
				if (d.PolicyVersion == allowVersion) != (d.Decision == wire.Allow) {
					t.Errorf("decision %s with version %s", d.Decision, d.PolicyVersion)
				}
				if d.Decision == wire.Allow {
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

// git runs git in dir with a fixed identity, failing the test on error.
func git(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.email=t@example.com", "-c", "user.name=t", "-c", "commit.gpgsign=false"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// policyTree is n permit files that name the version, and the version's one
// forbid file: every whole version denies, and a tree caught between the
// two (the old forbid removed, the new one not yet written) allows.
func policyTree(version string, n int) map[string]string {
	files := map[string]string{}
	for i := range n {
		files[fmt.Sprintf("policies/team%02d/p%03d.cedar", i%10, i)] = fmt.Sprintf("@id(\"p%03d-%s\")\npermit (principal, action, resource);\n", i, version)
	}
	forbid := map[string]string{"a": "policies/zz_forbid_a.cedar", "b": "policies/aa_forbid_b.cedar"}[version]
	files[forbid] = fmt.Sprintf("@id(\"forbid-%s\")\nforbid (principal, action, resource);\n", version)
	return files
}

// TestReload_GitCheckoutNeverServesHalfATree switches a git working tree of
// 300 policy files between two commits, both of which deny, while
// decisions run. A smudge filter (as git-lfs and git-crypt install: a
// process per file) makes each checkout take over a second, longer than any fixed quiet
// period. Every answer must come from one of the two whole versions. (On
// the watcher this replaced, which waited 100ms for quiet but never more
// than 1s, versions between the two answered allow.)
func TestReload_GitCheckoutNeverServesHalfATree(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	const n = 300
	repo := t.TempDir()
	git(t, repo, "init", "-q", "-b", "main")
	git(t, repo, "config", "filter.slow.smudge", "cat")
	git(t, repo, "config", "filter.slow.clean", "cat")
	pdptest.WriteFiles(t, repo, map[string]string{".gitattributes": "*.cedar filter=slow\n"})
	pdptest.WriteFiles(t, repo, policyTree("a", n))
	git(t, repo, "add", "-A")
	git(t, repo, "commit", "-q", "-m", "a")
	git(t, repo, "rm", "-q", "policies/zz_forbid_a.cedar")
	pdptest.WriteFiles(t, repo, policyTree("b", n))
	git(t, repo, "add", "-A")
	git(t, repo, "commit", "-q", "-m", "b")
	git(t, repo, "tag", "b")

	// The versions of the two whole trees: file names are part of a
	// version, so load each from the repository itself.
	policies := filepath.Join(repo, "policies")
	versions := map[string]string{}
	for _, v := range []struct{ rev, name string }{{"b", "b"}, {"HEAD~1", "a"}} {
		git(t, repo, "checkout", "-q", v.rev)
		snap, err := policy.LoadDir(policies, policy.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		versions[snap.Version] = v.name
	}

	log := openLog(t)
	e, err := pdp.NewEngine(pdp.Options{Policies: policies, Recorder: log, Key: pdptest.TestKey, Prompt: pdp.PromptDrop})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pdptest.LoadNow(t.Context(), e, "startup"); err != nil {
		t.Fatal(err)
	}
	if versions[e.Snapshot().Version] != "a" {
		t.Fatal("startup did not load version a")
	}
	w := pdptest.NewReloader(e, policies, 0) // the daemon's default quiet period
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { w.Run(ctx) })
	if _, err := w.Reload(t.Context(), "sync"); err != nil {
		t.Fatal(err)
	}

	var decided atomic.Int64
	seen := make([]map[string]int, 2)
	for g := range 2 {
		seen[g] = map[string]int{}
		wg.Go(func() {
			for ctx.Err() == nil {
				d, err := e.Decide(ctx, mustRequest(t, `{`+okRefs+`}`), nil)
				if err != nil {
					if ctx.Err() == nil {
						t.Error(err)
					}
					return
				}
				decided.Add(1)
				if _, whole := versions[d.PolicyVersion]; !whole || d.Decision != wire.Deny {
					seen[g][string(d.Decision)+" by "+d.PolicyVersion]++
				}
			}
		})
	}
	switchTo := func(rev, want string) {
		start := time.Now()
		git(t, repo, "checkout", "-q", rev)
		took := time.Since(start)
		pdptest.Eventually(t, "version "+want+" after checkout", func() bool { return versions[e.Snapshot().Version] == want })
		t.Logf("checkout of %s took %v", rev, took)
	}
	switchTo("b", "b")
	switchTo("HEAD~1", "a") // removes aa_forbid_b first, writes zz_forbid_a last
	cancel()
	wg.Wait()
	for g := range seen {
		for what, count := range seen[g] {
			t.Errorf("%d answers %s: a half-changed policy tree", count, what)
		}
	}
	t.Logf("%d decisions during 2 checkouts of %d files", decided.Load(), n)
}

// TestReload_OnlyPolicyFilesCount: a file rewritten without pause beside
// the policies (a log, an editor's swap file) neither holds a reload back
// nor causes one.
func TestReload_OnlyPolicyFilesCount(t *testing.T) {
	dir := t.TempDir()
	pdptest.WriteFiles(t, dir, map[string]string{"p.cedar": permitAll})
	e, _, _ := watched(t, dir)
	reloads := e.Status().Reloads
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			pdptest.WriteFiles(t, dir, map[string]string{"notes.txt": fmt.Sprint(i), ".p.cedar.swp": fmt.Sprint(i), "p.cedar~": fmt.Sprint(i)})
			time.Sleep(5 * time.Millisecond)
		}
	})
	defer func() { cancel(); wg.Wait() }()
	time.Sleep(300 * time.Millisecond)
	if got := e.Status().Reloads; got != reloads {
		t.Errorf("%d reloads for files that are not policies", got-reloads)
	}
	pdptest.WriteFiles(t, dir, map[string]string{"p.cedar": forbidAll})
	start := time.Now()
	pdptest.Eventually(t, "the policy change despite the churn beside it", func() bool { return wire.Verdict(decideFor(t, e)) == wire.Deny })
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("reload took %v with other files changing", took)
	}
}

// TestReload_GitWorktreeSwitchedByRename is the atomic way to deploy from
// git (docs/deploying-policies.md): check the new commit out into a
// worktree of its own, then point the served path at it with one rename
// of a symlink. The daemon sees one change and loads one whole tree.
func TestReload_GitWorktreeSwitchedByRename(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	root := t.TempDir()
	repo := filepath.Join(root, "repo")
	pdptest.WriteFiles(t, repo, policyTree("a", 50))
	git(t, repo, "init", "-q", "-b", "main")
	git(t, repo, "add", "-A")
	git(t, repo, "commit", "-q", "-m", "a")
	git(t, repo, "rm", "-q", "policies/zz_forbid_a.cedar")
	pdptest.WriteFiles(t, repo, policyTree("b", 50))
	git(t, repo, "add", "-A")
	git(t, repo, "commit", "-q", "-m", "b")
	git(t, repo, "worktree", "add", "-q", "--detach", filepath.Join(root, "rev-a"), "HEAD~1")

	current := filepath.Join(root, "current")
	must(t, os.Symlink(filepath.Join("rev-a", "policies"), current))
	e, _, _ := watched(t, current)
	before := e.Snapshot().Version
	if wire.Verdict(decideFor(t, e)) != wire.Deny || len(e.Snapshot().Policies) != 51 {
		t.Fatal("rev-a not served")
	}

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	seen := map[string]int{}
	wg.Go(func() {
		for ctx.Err() == nil {
			d, err := e.Decide(ctx, mustRequest(t, `{`+okRefs+`}`), nil)
			if err == nil {
				seen[string(d.Decision)+" by "+d.PolicyVersion]++
			}
		}
	})
	git(t, repo, "worktree", "add", "-q", "--detach", filepath.Join(root, "rev-b"), "main")
	must(t, os.Symlink(filepath.Join("rev-b", "policies"), filepath.Join(root, "current.next")))
	must(t, os.Rename(filepath.Join(root, "current.next"), current)) // rename(2): atomic
	pdptest.Eventually(t, "rev-b after the rename", func() bool { return e.Snapshot().Version != before })
	after := e.Snapshot()
	if len(after.Policies) != 51 || !strings.Contains(after.Files[0].Path, "aa_forbid_b.cedar") {
		t.Fatalf("served after the switch: %d policies, first file %s", len(after.Policies), after.Files[0].Path)
	}
	time.Sleep(200 * time.Millisecond)
	cancel()
	wg.Wait()
	for what, n := range seen {
		if what != "deny by "+before && what != "deny by "+after.Version {
			t.Errorf("%d answers %s: neither revision", n, what)
		}
	}
	if n := e.Status().Reloads; n > 4 {
		t.Errorf("%d reloads for one switch", n)
	}
}

// Issue 17: a policy set fixed after a failed reload logged nothing. The
// reload that ends a run of failures says so at Info, with the version it
// serves, even when the fix restores the version served throughout; the
// status and metric that showed the failure show it over.
func TestReload_FixedAfterFailureSaysSo(t *testing.T) {
	dir := t.TempDir()
	pdptest.WriteFiles(t, dir, map[string]string{"p.cedar": permitAll})
	log := openLog(t)
	e, err := pdp.NewEngine(pdp.Options{Policies: dir, Recorder: log, Key: pdptest.TestKey, Prompt: pdp.PromptDrop})
	must(t, err)
	_, err = pdptest.LoadNow(t.Context(), e, "startup")
	must(t, err)
	serving := e.Snapshot().Version
	var mu sync.Mutex
	var logs strings.Builder
	w := reload.New(reload.Options{Debounce: 10 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(lockedBuilder{&mu, &logs}, nil)),
		Trees: []reload.Tree{{Name: "policies", Dir: dir, Failed: e.LoadFailed, Version: func() string { return e.Snapshot().Version },
			Load: func(context.Context) (reload.Commit, error) { return e.Stage() }}}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	read := func() string { mu.Lock(); defer mu.Unlock(); return logs.String() }

	pdptest.WriteFiles(t, dir, map[string]string{"p.cedar": "permit (principal,"})
	if _, err := w.Reload(t.Context(), "test"); err == nil {
		t.Fatal("a broken file reloaded")
	}
	w.Reload(t.Context(), "test") // a second failure in the same run
	if st := e.Status(); st.LastReloadOK || st.LastReloadError == "" {
		t.Errorf("status while failing: %+v", st)
	}
	// The fix restores the very file that was serving: same version.
	pdptest.WriteFiles(t, dir, map[string]string{"p.cedar": permitAll})
	if changed, err := w.Reload(t.Context(), "test"); err != nil || changed {
		t.Fatalf("the fix: changed %v, %v", changed, err)
	}
	out := read()
	want := fmt.Sprintf(`level=INFO msg="policies load again after failed reloads; serving" tree=policies dir=%s trigger=test policy_version=%s changed=false failed_reloads=2 failing_since=`, dir, serving)
	if !strings.Contains(out, want) {
		t.Errorf("no line saying the set serves again; want %q in:\n%s", want, out)
	}
	if st := e.Status(); !st.LastReloadOK || st.LastReloadOKAt == nil || st.LastReloadError != "" || st.PolicyVersion != serving {
		t.Errorf("status after the fix: %+v", st)
	}
	// The next good reload is an ordinary one again.
	w.Reload(t.Context(), "test")
	if n := strings.Count(read(), "load again after failed reloads"); n != 1 {
		t.Errorf("said %d times that the set serves again", n)
	}
}

type lockedBuilder struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (l lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
