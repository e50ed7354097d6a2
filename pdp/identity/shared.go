package identity

import (
	"sync"
	"time"
)

// SharedTracker notices a principal used by more than one executable or
// uid within a window: a shared service account, which breaks the trail
// from a decision to the program that asked for it.
type SharedTracker struct {
	window time.Duration
	max    int // principals remembered; beyond it the oldest are dropped at a sweep

	mu    sync.Mutex
	seen  map[string][]use // principal → the distinct callers seen within window
	calls int
}

type use struct {
	uid  uint32
	exe  string
	last time.Time
}

// NewSharedTracker remembers each principal's callers for window.
func NewSharedTracker(window time.Duration) *SharedTracker {
	return &SharedTracker{window: window, max: 100_000, seen: map[string][]use{}}
}

// Observe records that principal was used by (uid, exe) at now and reports
// whether another uid or executable used it within the window.
func (t *SharedTracker) Observe(principal string, uid uint32, exe string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls++
	if t.calls%4096 == 0 || len(t.seen) > t.max {
		t.sweep(now)
	}
	uses := t.seen[principal]
	shared, found := false, false
	kept := uses[:0]
	for _, u := range uses {
		if now.Sub(u.last) > t.window {
			continue
		}
		if u.uid == uid && u.exe == exe {
			u.last, found = now, true
		} else {
			shared = true
		}
		kept = append(kept, u)
	}
	if !found && len(kept) < 16 { // enough to say "shared"; a bound on memory
		kept = append(kept, use{uid: uid, exe: exe, last: now})
	}
	t.seen[principal] = kept
	return shared
}

// sweep drops principals not seen within the window; if that is not enough
// it forgets everything (the flag is a signal, not a guarantee).
func (t *SharedTracker) sweep(now time.Time) {
	for p, uses := range t.seen {
		live := false
		for _, u := range uses {
			if now.Sub(u.last) <= t.window {
				live = true
				break
			}
		}
		if !live {
			delete(t.seen, p)
		}
	}
	if len(t.seen) > t.max {
		t.seen = map[string][]use{}
	}
}
