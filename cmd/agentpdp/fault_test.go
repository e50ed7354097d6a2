package main

import (
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// TestServe_DiskFull limits how far the daemon may write its files
// (RLIMIT_FSIZE: writes past it fail with EFBIG, as on a full disk). Answers
// must turn into 503, never into a decision the log does not hold, and
// service must resume once there is room.
func TestServe_DiskFull(t *testing.T) {
	d := newDaemonDir(t)
	d.start()
	cl := client.New(d.sock())
	req := &wire.Request{Principal: wire.EntityRef{Type: "Agent", ID: "billing-bot"}, Action: wire.EntityRef{Type: "Action", ID: "invoke_tool"},
		Resource: wire.EntityRef{Type: "Tool", ID: "sql.query"}}
	var answered []*wire.Decision
	decide := func() (int, error) {
		dec, err := cl.Authorize(t.Context(), req)
		if err == nil {
			answered = append(answered, dec)
			return http.StatusOK, nil
		}
		if e, ok := err.(*client.Error); ok {
			return e.Status, err
		}
		return 0, err
	}
	for range 20 {
		if code, err := decide(); code != http.StatusOK {
			t.Fatal(err)
		}
	}
	st, err := os.Stat(d.db() + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	pid := d.cmd.Process.Pid
	limit := &unix.Rlimit{Cur: uint64(st.Size()) + 16<<10, Max: unix.RLIM_INFINITY}
	if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, limit, nil); err != nil {
		t.Skipf("cannot limit the daemon's file size here (needs CAP_SYS_RESOURCE): %v", err)
	}
	full := 0
	for range 200 {
		code, err := decide()
		if code == http.StatusServiceUnavailable {
			full++
			continue
		}
		if code != http.StatusOK {
			t.Fatalf("want 200 or 503, got %d: %v", code, err)
		}
	}
	if full == 0 {
		t.Fatalf("the full disk never showed: %d answered", len(answered))
	}
	if _, err := cl.Health(t.Context()); err != nil {
		t.Errorf("the daemon stopped serving while the disk was full: %v", err)
	}
	// Room again: service resumes without a restart.
	if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, _ := decide(); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no decision after the disk had room again")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%d answered 503 while full; %d decisions answered in all", full, len(answered))
	d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.done
	if testing.Verbose() {
		t.Log(d.stderr.String()) // the daemon has exited: nothing writes it now
	}
	checkLogged(t, d.db(), answered)
	checkChain(t, d.db())
}
