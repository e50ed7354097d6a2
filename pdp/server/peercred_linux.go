package server

import (
	"net"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/agentpdp/agentpdp/pdp/identity"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// peerOf reads the caller's credentials from the kernel (SO_PEERCRED), which
// the caller cannot forge, and the executable its pid runs. The executable is
// empty when /proc does not let us read it (another user's process without
// CAP_SYS_PTRACE); the pid, uid and gid are still the kernel's.
func peerOf(c net.Conn) *wire.Peer {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || credErr != nil {
		return nil
	}
	p := &wire.Peer{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}
	p.Exe, _ = os.Readlink("/proc/" + strconv.Itoa(int(cred.Pid)) + "/exe")
	p.Cgroup = identity.ReadCgroup(cred.Pid) // its container or systemd unit, for callers rules
	return p
}
