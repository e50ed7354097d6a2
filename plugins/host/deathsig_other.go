//go:build !linux

package host

import "os/exec"

// dieWithDaemon does nothing where the kernel has no parent-death signal:
// there, a plugin outlives a daemon that did not stop cleanly.
func dieWithDaemon(*exec.Cmd) {}
