package reload

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/fsnotify/fsnotify"
)

// watchSet keeps one fsnotify watcher on the directories of every tree:
// each non-hidden directory under the tree's resolved path, and the
// configured path's parent, so that a swap of the path itself is seen.
// Only the Run goroutine touches it.
type watchSet struct {
	fw      *fsnotify.Watcher
	log     *slog.Logger
	watched map[string]bool   // every directory watched
	trees   []map[string]bool // per tree: its directories
}

// sync makes the watch set the trees' current directories.
func (w *watchSet) sync(trees []Tree) {
	want := map[string]bool{}
	for i, t := range trees {
		dirs := map[string]bool{filepath.Dir(filepath.Clean(t.Dir)): true}
		if root, err := filepath.EvalSymlinks(t.Dir); err == nil {
			filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return nil // removed under us; the next event syncs again
				}
				if d.IsDir() {
					if p != root && strings.HasPrefix(d.Name(), ".") {
						return fs.SkipDir
					}
					dirs[p] = true
				}
				return nil
			})
			// The root's hidden directories too: Kubernetes' ..data and
			// its timestamped targets live there.
			if ents, err := os.ReadDir(root); err == nil {
				for _, e := range ents {
					if strings.HasPrefix(e.Name(), ".") && e.IsDir() {
						dirs[filepath.Join(root, e.Name())] = true
					}
				}
			}
		}
		w.trees[i] = dirs
		for d := range dirs {
			want[d] = true
		}
	}
	for p := range w.watched {
		if !want[p] {
			w.fw.Remove(p) // fails harmlessly if the directory is gone
			delete(w.watched, p)
		}
	}
	for p := range want {
		if w.watched[p] {
			continue
		}
		if err := w.fw.Add(p); err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				w.log.Warn("cannot watch policy directory", "dir", p, "err", err)
			}
			continue
		}
		w.watched[p] = true
	}
}

// relevant reports whether ev changes tree i. Only policy files count, and
// what may hold them: a directory or link created, removed or renamed (a
// new team folder, Kubernetes' ..data swap). In the configured path's
// parent only the path itself counts (its swap). Editors' swap and backup
// files, logs and chmods do not, so they neither delay nor cause a reload.
func (w *watchSet) relevant(i int, t Tree, ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	dir := filepath.Dir(ev.Name)
	if !w.trees[i][dir] {
		return false
	}
	clean := filepath.Clean(t.Dir)
	if dir == filepath.Dir(clean) {
		return ev.Name == clean || filepath.Base(ev.Name) == filepath.Base(clean)
	}
	if IsPolicyFile(ev.Name) {
		return true
	}
	if w.trees[i][ev.Name] || w.watched[ev.Name] {
		return true // a watched directory removed or renamed away
	}
	if ev.Has(fsnotify.Create) || ev.Has(fsnotify.Rename) {
		if st, err := os.Lstat(ev.Name); err == nil && (st.IsDir() || st.Mode()&fs.ModeSymlink != 0) {
			return true
		}
	}
	return false
}
