//go:build linux

package host

import (
	"os/exec"
	"syscall"
)

// dieWithDaemon has the kernel send the plugin SIGTERM when the daemon
// dies, however it dies (PR_SET_PDEATHSIG, prctl(2)). go-plugin stops its
// plugins on a clean stop only: a daemon killed with SIGKILL, or by the
// OOM killer, left them running, orphaned, with their connections and
// credentials. The kernel sends the signal when the thread that started
// the plugin ends; Go's runtime ends a thread only when a goroutine
// locked to it returns, and nothing in agentpdp locks one.
func dieWithDaemon(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
