package decisionlog

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// LockPath is the lock file that makes one process the log's only writer.
func LockPath(path string) string { return path + ".lock" }

// LockedError says another process holds the writer's lock.
type LockedError struct {
	Path string // the lock file
	PID  int    // the holder's pid, 0 if it could not be read
}

func (e *LockedError) Error() string {
	holder := "another process"
	if e.PID > 0 {
		holder = "pid " + strconv.Itoa(e.PID)
	}
	return fmt.Sprintf("the decision log is already open for writing by %s (lock %s): one writer per log", holder, e.Path)
}

// lockWriter takes an exclusive flock(2) on the lock file beside the log,
// without waiting, and writes its pid there for the next one to name. The
// lock lasts as long as the returned file stays open, and the kernel
// releases it when the process dies, so a crash never leaves it stale.
// Readers never take it.
func lockWriter(path string) (*os.File, error) {
	lp := LockPath(path)
	f, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock decision log: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			le := &LockedError{Path: lp}
			if b, err := os.ReadFile(lp); err == nil {
				le.PID, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			}
			return nil, le
		}
		return nil, fmt.Errorf("lock decision log %s: %w", lp, err)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock decision log %s: %w", lp, err)
	}
	return f, nil
}
