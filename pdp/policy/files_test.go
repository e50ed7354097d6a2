package policy_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/pdp/policy"
)

const okPolicy = `@id("ok") permit (principal, action, resource);`

// loadWithin fails the test if LoadDir blocks.
func loadWithin(t *testing.T, dir string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := policy.LoadDir(dir, policy.LoadOptions{})
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("LoadDir blocked")
		return nil
	}
}

func TestLoadDir_RefusesAFIFOWithoutOpeningIt(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "ok.cedar"), []byte(okPolicy), 0o644))
	must(t, syscall.Mkfifo(filepath.Join(dir, "x.cedar"), 0o644))
	err := loadWithin(t, dir)
	if err == nil || !strings.Contains(err.Error(), "x.cedar") || !strings.Contains(err.Error(), "FIFO") {
		t.Fatalf("a FIFO named x.cedar: %v", err)
	}
	// A device too (/dev/null through a link inside the tree is still a device).
	os.Remove(filepath.Join(dir, "x.cedar"))
	if err := syscall.Mknod(filepath.Join(dir, "d.cedar"), syscall.S_IFCHR|0o644, 0x0103); err == nil {
		if err := loadWithin(t, dir); err == nil || !strings.Contains(err.Error(), "d.cedar") {
			t.Errorf("a device named d.cedar: %v", err)
		}
	}
}

func TestLoadDir_SymlinkOutOfTheTreeIsNotRead(t *testing.T) {
	const secret = "hunter2-correct-horse-battery"
	outside := filepath.Join(t.TempDir(), "secret.txt")
	must(t, os.WriteFile(outside, []byte(secret+" staple\n"), 0o600))
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "ok.cedar"), []byte(okPolicy), 0o644))
	must(t, os.Symlink(outside, filepath.Join(dir, "x.cedar")))
	err := loadWithin(t, dir)
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "x.cedar") {
		t.Fatalf("a link to a secret: %v", err)
	}
	// A link that stays inside the tree (a ConfigMap mount) is read.
	os.Remove(filepath.Join(dir, "x.cedar"))
	must(t, os.Mkdir(filepath.Join(dir, "..data"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "..data", "y.cedar"), []byte(`@id("y") forbid (principal, action, resource == Tool::"t");`), 0o644))
	must(t, os.Symlink("..data/y.cedar", filepath.Join(dir, "y.cedar")))
	snap, err := policy.LoadDir(dir, policy.LoadOptions{})
	if err != nil || snap.Policy("y") == nil {
		t.Fatalf("a link inside the tree: %v", err)
	}
}

// A file that fails to parse is never quoted: problems reach /v1/status
// and the daemon's log.
func TestLoadDir_ParseErrorsDoNotQuoteTheFile(t *testing.T) {
	const secret = "hunter2-correct-horse-battery"
	for name, content := range map[string]string{
		"p.cedar":         secret + " staple\n",
		"q.cedar":         `permit (principal == ` + secret + `, action, resource);`,
		"s.cedarschema":   secret + " entity User;",
		"e.entities.json": secret,
		"f.entities.json": `[{"uid": "` + secret + `"}]`,
	} {
		dir := t.TempDir()
		must(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
		_, err := policy.LoadDir(dir, policy.LoadOptions{})
		var le *policy.LoadError
		if !errors.As(err, &le) || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
