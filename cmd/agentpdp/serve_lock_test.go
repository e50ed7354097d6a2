package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// A second daemon on the log another one writes (make run's, say) refuses
// to start, saying so once and what to do (issue 17: it read "agentpdp: the
// decision log is already open …", with no command and no way out).
func TestServe_SecondWriterOnTheLogIsTold(t *testing.T) {
	d := newDaemonDir(t)
	d.start()
	code, _, stderr := runCLI(t, "serve", "--config", d.config,
		"--socket", filepath.Join(d.dir, "var", "b.sock"), "--admin-socket", filepath.Join(d.dir, "var", "b-admin.sock"))
	if code != exitFail || !strings.HasPrefix(stderr, "agentpdp: serve: the decision log is already open for writing by pid ") ||
		!strings.Contains(stderr, "give this one its own --db, --socket and --admin-socket") || strings.Count(stderr, "already open") != 1 {
		t.Errorf("second writer: exit %d\n%s", code, stderr)
	}
}
