package pdp

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watcher reloads an Engine's policies when their directory changes, and on
// demand. One goroutine, Run, owns every reload, so that reloads never race
// each other and a burst of saves costs one reload.
//
// It handles editors that save by writing a temporary file and renaming it,
// files and directories created and removed, and both Kubernetes-style swaps:
// a ..data symlink replaced inside the directory, and the directory itself
// being a symlink that is replaced.
type Watcher struct {
	engine   *Engine
	dir      string // as configured, possibly a symlink
	load     func(context.Context, string) (bool, error)
	current  func() *Snapshot
	debounce time.Duration
	maxDelay time.Duration
	logger   *slog.Logger
	force    chan forceReq
}

type forceReq struct {
	trigger string
	result  chan reloadResult
}

type reloadResult struct {
	changed bool
	err     error
}

// NewWatcher watches the engine's policy directory. debounce is the quiet
// time after the last change before reloading; 0 means 100ms.
func NewWatcher(engine *Engine, debounce time.Duration, logger *slog.Logger) *Watcher {
	w := newWatcher(engine, engine.opts.Policies, debounce, logger)
	w.load, w.current = engine.Reload, engine.Snapshot
	return w
}

// NewShadowWatcher watches the engine's shadow policy directory.
func NewShadowWatcher(engine *Engine, debounce time.Duration, logger *slog.Logger) *Watcher {
	w := newWatcher(engine, engine.opts.Shadow, debounce, logger)
	w.load, w.current = engine.ReloadShadow, engine.ShadowSnapshot
	return w
}

func newWatcher(engine *Engine, dir string, debounce time.Duration, logger *slog.Logger) *Watcher {
	if debounce <= 0 {
		debounce = 100 * time.Millisecond
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Watcher{
		engine:   engine,
		dir:      dir,
		debounce: debounce,
		maxDelay: 10 * debounce,
		logger:   logger,
		force:    make(chan forceReq),
	}
}

// Reload asks Run to reload now and waits for the result.
func (w *Watcher) Reload(ctx context.Context, trigger string) (bool, error) {
	req := forceReq{trigger: trigger, result: make(chan reloadResult, 1)}
	select {
	case w.force <- req:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	select {
	case r := <-req.result:
		return r.changed, r.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// Run watches until ctx ends. It returns an error only if watching cannot
// start; failures to reload are logged and kept in the engine's status.
func (w *Watcher) Run(ctx context.Context) error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch policies: %w", err)
	}
	defer fw.Close()
	watched := map[string]bool{}
	w.sync(fw, watched)

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var pendingSince time.Time // zero when nothing is pending

	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return errors.New("watch policies: watcher closed")
			}
			if !w.relevant(ev) {
				continue
			}
			now := time.Now()
			if pendingSince.IsZero() {
				pendingSince = now
			}
			// Wait for quiet, but never longer than maxDelay in all, so that
			// a file rewritten continuously still gets reloaded.
			wait := min(w.debounce, pendingSince.Add(w.maxDelay).Sub(now))
			timer.Reset(max(wait, 0))
		case err, ok := <-fw.Errors:
			if !ok {
				return errors.New("watch policies: watcher closed")
			}
			// An overflow loses events: reload to be sure we are current.
			w.logger.Warn("policy watch error", "err", err)
			timer.Reset(w.debounce)
		case <-timer.C:
			pendingSince = time.Time{}
			// Watch the tree as it is now before reading it: an edit in a
			// directory that appeared (or a swapped-in target) between the
			// read and the watch would otherwise never be seen.
			w.sync(fw, watched)
			w.reload(ctx, "watch")
		case req := <-w.force:
			w.sync(fw, watched)
			changed, err := w.reload(ctx, req.trigger)
			req.result <- reloadResult{changed, err}
		}
	}
}

func (w *Watcher) reload(ctx context.Context, trigger string) (bool, error) {
	prev := w.current()
	changed, err := w.load(ctx, trigger)
	switch {
	case err != nil:
		attrs := []any{"trigger", trigger, "err", err}
		if prev != nil {
			attrs = append(attrs, "serving", prev.Version)
		}
		w.logger.Error("policy reload failed; keeping the current policies", attrs...)
	case changed:
		snap := w.current()
		w.logger.Info("policies reloaded", "dir", w.dir, "trigger", trigger, "policy_version", snap.Version, "policies", len(snap.Policies))
	default:
		w.logger.Debug("policies unchanged", "trigger", trigger)
	}
	return changed, err
}

// relevant filters events: anything in a policy directory except chmod, and
// in the parent directory only the policy directory's own name (its swap).
func (w *Watcher) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	if filepath.Dir(ev.Name) == filepath.Dir(filepath.Clean(w.dir)) {
		return filepath.Base(ev.Name) == filepath.Base(w.dir)
	}
	return true
}

// sync makes the watch set the policy directory's current tree: every
// non-hidden directory under its resolved path, the root's hidden children
// too (Kubernetes' ..data lives there), and the configured path's parent
// so a swap of the path itself is seen.
func (w *Watcher) sync(fw *fsnotify.Watcher, watched map[string]bool) {
	want := map[string]bool{}
	parent := filepath.Dir(filepath.Clean(w.dir))
	want[parent] = true
	if root, err := filepath.EvalSymlinks(w.dir); err == nil {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // a directory removed under us; the next event syncs again
			}
			if d.IsDir() {
				if p != root && strings.HasPrefix(d.Name(), ".") {
					return fs.SkipDir
				}
				want[p] = true
			}
			return nil
		})
	}
	for p := range watched {
		if !want[p] {
			fw.Remove(p) // fails harmlessly if the directory is gone
			delete(watched, p)
		}
	}
	for p := range want {
		if watched[p] {
			continue
		}
		if err := fw.Add(p); err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				w.logger.Warn("cannot watch policy directory", "dir", p, "err", err)
			}
			continue
		}
		watched[p] = true
	}
}
