// Package reload owns policy hot reload: one goroutine, [Reloader.Run],
// takes every reason to reload (debounced file-system events, SIGHUP handed
// in by cmd, and POST /v1/reload through [Reloader.Reload]) and runs them
// through one function that loads, validates and only then swaps, keeping
// the serving set when anything fails.
//
// A reload never serves a half-changed tree. Only policy files count as
// changes; the quiet period restarts at every change, without a cap a long
// deploy could outlast; and the tree is read before and after each load:
// if the two readings differ, the tree was still changing, and the load is
// thrown away and retried once it is quiet again. Atomic deploys (a
// directory symlink swapped by rename, as Kubernetes ConfigMaps do) need
// none of this; docs/deploying-policies.md describes them.
package reload

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/agentpdp/agentpdp/pdp/policy"
)

// Policy file suffixes: only files with these count as changes. They are
// pdp's PolicySuffix, SchemaSuffix and EntitiesSuffix.
var Suffixes = []string{".cedar", ".cedarschema", ".entities.json"}

// Commit publishes a loaded and validated tree. It reports whether the
// serving version changed.
type Commit func(ctx context.Context, trigger string) (changed bool, err error)

// Tree is one policy directory the reloader keeps served.
type Tree struct {
	Name string // "policies" or "shadow", for logs
	Dir  string // as configured; may be a symlink that is swapped
	// Load reads and validates the tree without changing what is served,
	// and returns the commit that serves it.
	Load func(ctx context.Context) (Commit, error)
	// Failed records a load that was refused (a parse or validation error
	// in a tree that was not changing); the serving set stays.
	Failed func(err error)
	// Version is the serving version, for logs.
	Version func() string
}

// Options configure a Reloader.
type Options struct {
	Trees []Tree
	// Debounce is the quiet time after the last policy-file change before
	// reloading; default 100ms. Every change restarts it.
	Debounce time.Duration
	// MaxWait bounds how long continuous changes put a reload off (default
	// 30s). Past it the reloader tries anyway, but still serves a tree only
	// if it reads the same before and after the load.
	MaxWait time.Duration
	// Hangup delivers SIGHUP; cmd wires it with signal.Notify. Optional.
	Hangup <-chan os.Signal
	Logger *slog.Logger
}

// ErrUnsettled means the tree kept changing while it was read, so nothing
// was swapped in.
var ErrUnsettled = errors.New("the policy tree changed while it was read")

// Reloader is the one reload component. Create with New, run with Run.
type Reloader struct {
	opts  Options
	force chan forceReq
	log   *slog.Logger
	// failing is, per tree, the run of refused loads not yet followed by
	// a good one. Only Run's goroutine reads or writes it.
	failing []failRun
}

// failRun is a tree's refused loads since its last good one.
type failRun struct {
	n     int
	since time.Time
}

type forceReq struct {
	trigger string
	result  chan result
}

type result struct {
	changed bool
	err     error
}

// New checks opts and sets defaults.
func New(opts Options) *Reloader {
	if opts.Debounce <= 0 {
		opts.Debounce = 100 * time.Millisecond
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Reloader{opts: opts, force: make(chan forceReq), log: opts.Logger, failing: make([]failRun, len(opts.Trees))}
}

// Reload asks Run to reload every tree now and waits for the result: as
// SIGHUP and POST /v1/reload do. It needs Run to be running. A tree still
// changing is retried until it settles or MaxWait passes (ErrUnsettled).
func (r *Reloader) Reload(ctx context.Context, trigger string) (bool, error) {
	req := forceReq{trigger: trigger, result: make(chan result, 1)}
	select {
	case r.force <- req:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	select {
	case res := <-req.result:
		return res.changed, res.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// pending is a tree with changes not yet loaded: since the first change,
// last the latest, tried the last attempt that found the tree unsettled.
type pending struct {
	since, last, tried time.Time
}

// due is when a pending tree is next loaded: after Debounce of quiet, or
// once MaxWait has passed since the first change, but never sooner than
// Debounce after an attempt that found the tree still changing.
func (r *Reloader) due(p pending) time.Time {
	quiet := p.last.Add(r.opts.Debounce)
	capped := p.since.Add(r.opts.MaxWait)
	if !p.tried.IsZero() {
		capped = later(capped, p.tried.Add(r.opts.Debounce))
	}
	if quiet.Before(capped) {
		return quiet
	}
	return capped
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Run watches until ctx ends. It returns an error only if watching cannot
// start or the watcher dies; failed reloads are logged and kept in the
// trees' status.
func (r *Reloader) Run(ctx context.Context) error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch policies: %w", err)
	}
	defer fw.Close()
	ws := &watchSet{fw: fw, log: r.log, watched: map[string]bool{}, trees: make([]map[string]bool, len(r.opts.Trees))}
	ws.sync(r.opts.Trees)

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	waiting := make([]pending, len(r.opts.Trees))
	arm := func(now time.Time) {
		var next time.Time
		for _, p := range waiting {
			if p.since.IsZero() {
				continue
			}
			at := r.due(p)
			if next.IsZero() || at.Before(next) {
				next = at
			}
		}
		if !next.IsZero() {
			timer.Reset(max(next.Sub(now), 0))
		}
	}
	mark := func(i int, now time.Time) {
		if waiting[i].since.IsZero() {
			waiting[i].since = now
		}
		waiting[i].last = now
	}

	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return errors.New("watch policies: watcher closed")
			}
			now := time.Now()
			hit := false
			for i, t := range r.opts.Trees {
				if ws.relevant(i, t, ev) {
					mark(i, now)
					hit = true
				}
			}
			if hit {
				arm(now)
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return errors.New("watch policies: watcher closed")
			}
			// An overflow loses events: reload everything to be sure.
			r.log.Warn("policy watch error; reloading every tree", "err", err)
			now := time.Now()
			for i := range waiting {
				mark(i, now)
			}
			arm(now)
		case <-timer.C:
			now := time.Now()
			for i, p := range waiting {
				if p.since.IsZero() {
					continue
				}
				if now.Before(r.due(p)) {
					continue
				}
				// Watch the tree as it is now before reading it: an edit in
				// a directory that appeared between the read and the watch
				// would otherwise never be seen.
				ws.sync(r.opts.Trees)
				_, err := r.reload(ctx, i, "watch", p.since)
				if errors.Is(err, ErrUnsettled) {
					// Still changing: try again after another quiet period.
					waiting[i].tried = time.Now()
					continue
				}
				waiting[i] = pending{}
			}
			arm(now)
		case <-r.opts.Hangup:
			ws.sync(r.opts.Trees)
			r.reloadAll(ctx, "sighup")
		case req := <-r.force:
			ws.sync(r.opts.Trees)
			changed, err := r.reloadAll(ctx, req.trigger)
			req.result <- result{changed, err}
		}
	}
}

// reloadAll reloads every tree now, retrying one that is still changing
// until it settles or MaxWait passes.
func (r *Reloader) reloadAll(ctx context.Context, trigger string) (bool, error) {
	var errs []error
	changed := false
	for i := range r.opts.Trees {
		start := time.Now()
		for {
			c, err := r.reload(ctx, i, trigger, start)
			if errors.Is(err, ErrUnsettled) && time.Since(start) < r.opts.MaxWait+r.opts.Debounce && ctx.Err() == nil {
				sleep(ctx, r.opts.Debounce)
				continue
			}
			changed = changed || c
			if err != nil {
				errs = append(errs, err)
			}
			break
		}
	}
	return changed, errors.Join(errs...)
}

// reload is the one reload: read the tree's digest, load and validate,
// read the digest again, and swap only if the two readings agree. A git
// checkout in progress (its index.lock present) counts as a change under
// way until MaxWait after since, in case the lock is stale. On any failure
// the serving set stays.
func (r *Reloader) reload(ctx context.Context, i int, trigger string, since time.Time) (bool, error) {
	t := r.opts.Trees[i]
	log := r.log.With("tree", t.Name, "dir", t.Dir, "trigger", trigger)
	if lock := GitLock(t.Dir); lock != "" {
		if time.Since(since) < r.opts.MaxWait {
			log.Info("a git operation is changing the policy tree; waiting for it to finish", "lock", lock, "serving", version(t))
			return false, fmt.Errorf("reload %s: %s exists: %w", t.Name, lock, ErrUnsettled)
		}
		log.Warn("git's index.lock has stayed past reload.max_wait; loading anyway if the tree is still", "lock", lock)
	}
	before, berr := Digest(t.Dir)
	commit, err := t.Load(ctx)
	after, aerr := Digest(t.Dir)
	if before != after || (berr == nil) != (aerr == nil) {
		log.Info("policy tree changed while it was read; waiting for it to settle", "serving", version(t))
		return false, fmt.Errorf("reload %s: %w", t.Name, ErrUnsettled)
	}
	if err == nil {
		var changed bool
		changed, err = commit(ctx, trigger)
		if err == nil {
			switch f := r.failing[i]; {
			case f.n > 0:
				// Said at Info even when the version is the one served
				// throughout (a broken edit reverted): whoever saw the
				// failures must learn they are over.
				log.Info("policies load again after failed reloads; serving", "policy_version", version(t),
					"changed", changed, "failed_reloads", f.n, "failing_since", f.since.UTC().Format(time.RFC3339Nano))
				r.failing[i] = failRun{}
			case changed:
				log.Info("policies reloaded", "policy_version", version(t))
			default:
				log.Debug("policies unchanged")
			}
			return changed, nil
		}
	} else if t.Failed != nil {
		t.Failed(err)
	}
	if r.failing[i].n == 0 {
		r.failing[i].since = time.Now()
	}
	r.failing[i].n++
	log.Error("policy reload failed; keeping the current policies", "err", err, "serving", version(t))
	return false, err
}

func version(t Tree) string {
	if t.Version == nil {
		return ""
	}
	return t.Version()
}

func sleep(ctx context.Context, d time.Duration) {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
	case <-tm.C:
	}
}

// IsPolicyFile reports whether name is a file the loader reads.
func IsPolicyFile(name string) bool {
	for _, s := range Suffixes {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// Digest is a SHA-256 over the names and contents of the policy files a
// load of dir reads (the same walk: the directory resolved once, hidden
// entries below the root skipped, symlinked files read through their link
// while it stays in the tree, by policy.ReadTree),
// hex encoded. Two equal digests around a load mean the tree did not change
// while it was read.
func Digest(dir string) (string, error) {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	// The loader's own reader: regular files only, links kept inside the
	// tree, so a FIFO named x.cedar cannot block the digest either.
	err = policy.ReadTree(root, func(p string, b []byte) error {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
		return nil
	})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}

// GitLock returns the index.lock of the git repository or worktree that
// holds dir, if one exists: git holds it while a checkout, merge or pull
// rewrites the working tree, so a tree read then may be half-changed.
// It returns "" when there is none, or dir is not in a git working tree.
func GitLock(dir string) string {
	d, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return ""
	}
	for {
		dotgit := filepath.Join(d, ".git")
		if st, err := os.Stat(dotgit); err == nil {
			gitdir := dotgit
			if !st.IsDir() {
				// A linked worktree: ".git" is a file "gitdir: PATH".
				b, err := os.ReadFile(dotgit)
				if err != nil {
					return ""
				}
				line, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "gitdir:")
				if !ok {
					return ""
				}
				gitdir = strings.TrimSpace(line)
				if !filepath.IsAbs(gitdir) {
					gitdir = filepath.Join(d, gitdir)
				}
			}
			lock := filepath.Join(gitdir, "index.lock")
			if _, err := os.Stat(lock); err == nil {
				return lock
			}
			return ""
		}
		parent := filepath.Dir(d)
		if parent == d {
			return ""
		}
		d = parent
	}
}
