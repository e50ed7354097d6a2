package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/pdp/client"
)

// Issue 17: policies fixed after a failed reload logged nothing. The
// daemon's log, status and metrics say the set serves again.
func TestServe_PolicyFixedAfterFailure(t *testing.T) {
	d := newDaemonDir(t)
	d.start()
	admin := client.New(d.asock())
	// start waits for the decision socket; the admin socket may follow.
	var st *client.Status
	var err error
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if st, err = admin.Status(t.Context()); err == nil || time.Now().After(deadline) {
			break
		}
	}
	must(t, err)
	serving := st.Policies.PolicyVersion
	metric := func() string {
		_, body := scrape(t, d.asock())
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, "agentpdp_policy_last_reload_successful ") {
				return line
			}
		}
		return ""
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not happen", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if got := metric(); got != "agentpdp_policy_last_reload_successful 1" {
		t.Errorf("at start: %q", got)
	}
	broken := filepath.Join(d.dir, "policies", "zz-broken.cedar")
	must(t, os.WriteFile(broken, []byte("permit (principal,"), 0o644))
	waitFor("a refused reload", func() bool { return metric() == "agentpdp_policy_last_reload_successful 0" })
	st, err = admin.Status(t.Context())
	if err != nil || st.Policies.LastReloadOK || st.Policies.LastReloadError == "" {
		t.Errorf("status while failing: %+v %v", st, err)
	}
	must(t, os.Remove(broken)) // the fix: the tree as it was
	waitFor("the fixed tree serving", func() bool { return metric() == "agentpdp_policy_last_reload_successful 1" })
	st, err = admin.Status(t.Context())
	if err != nil || !st.Policies.LastReloadOK || st.Policies.LastReloadError != "" || st.Policies.PolicyVersion != serving {
		t.Errorf("status after the fix: %+v %v", st, err)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.done
	if logs := d.stderr.String(); !strings.Contains(logs, `msg="policies load again after failed reloads; serving"`) ||
		!strings.Contains(logs, "policy_version="+serving+" changed=false failed_reloads=") {
		t.Errorf("the daemon's log does not say the policies serve again:\n%s", logs)
	}
}
