package server

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Under umask 000 the socket must not be reachable by others for even a
// moment: its mode when it first exists is already no looser than final.
func TestListenUnix_NeverLooserThanItsMode(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	var first os.FileMode
	afterListen = func(path string) {
		if st, err := os.Stat(path); err == nil {
			first = st.Mode().Perm()
		}
	}
	defer func() { afterListen = nil }()
	for _, mode := range []os.FileMode{0o600, 0o660} {
		path := filepath.Join(t.TempDir(), "s.sock")
		ln, err := listenUnix(path, mode)
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		if first&^mode != 0 {
			t.Errorf("mode %#o: the socket existed with mode %#o before its chmod", mode, first)
		}
	}
	// The process's umask is back as it was.
	if got := syscall.Umask(0); got != 0 {
		t.Errorf("umask left at %#o", got)
	}
}
