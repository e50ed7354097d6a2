package pdp_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// TestServer_SlowLoris: a client holding 1,000 connections that send
// nothing (or half a request) does not keep others from being answered,
// and the server closes those connections after its header timeout.
func TestServer_SlowLoris(t *testing.T) {
	d := pdptest.Serve(t, map[string]string{"p.cedar": pdptest.AgentPolicies})
	var idle []net.Conn
	for i := range 1000 {
		c, err := net.Dial("unix", d.Sock)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		if i%2 == 1 {
			c.Write([]byte("POST /v1/authorize HTTP/1.1\r\nHost: x\r\n")) // and never finish
		}
		idle = append(idle, c)
	}
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range 50 {
		if dec, err := d.Agent.Authorize(t.Context(), pdptest.Request("a")); err != nil || dec.Decision != wire.Allow {
			t.Fatalf("a well-behaved client was not answered: %v %v", dec, err)
		}
	}
	// The server drops them (its header timeout is 500ms here).
	var closed atomic.Int64
	var wg sync.WaitGroup
	for _, c := range idle {
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Read(make([]byte, 1)); errors.Is(err, io.EOF) {
				closed.Add(1)
			} else if err == nil {
				closed.Add(1) // an error answer, then close: also not held open
			}
		})
	}
	wg.Wait()
	if closed.Load() != int64(len(idle)) {
		t.Errorf("%d of %d idle connections closed by the server", closed.Load(), len(idle))
	}
}

// TestReloadStorm reloads valid and broken policies alternately under load:
// no request fails, every decision is the one its policy version makes, and
// memory stays flat. 1,000 reloads here; AGENTPDP_SOAK=1 (make soak) makes
// it 10,000.
func TestReloadStorm(t *testing.T) {
	reloads := 1000
	if os.Getenv("AGENTPDP_SOAK") != "" {
		reloads = 10000
	}
	dir := t.TempDir()
	log, err := decisionlog.Open(t.Context(), dir+"/d.db", decisionlog.Options{Durability: decisionlog.DurabilityNormal})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close(context.Background())
	e, err := pdp.NewEngine(pdp.Options{Policies: dir + "/policies", Recorder: log, Log: log, Key: pdptest.TestKey})
	if err != nil {
		t.Fatal(err)
	}
	pdptest.WriteFiles(t, dir+"/policies", map[string]string{"p.cedar": permitAll})
	if _, err := pdptest.LoadNow(t.Context(), e, "startup"); err != nil {
		t.Fatal(err)
	}
	allowVersion := e.Snapshot().Version

	ctx, cancel := context.WithCancel(t.Context())
	var decided, failed atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				d, err := e.Decide(ctx, mustRequest(t, `{`+okRefs+`}`), nil)
				if err != nil {
					if ctx.Err() == nil {
						failed.Add(1)
						t.Errorf("decision failed during reloads: %v", err)
					}
					return
				}
				if (d.PolicyVersion == allowVersion) != (d.Decision == wire.Allow) {
					t.Errorf("decision %s by version %s: a half-loaded snapshot", d.Decision, d.PolicyVersion)
				}
				decided.Add(1)
			}
		})
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	var early uint64
	contents := []string{forbidAll, "permit (principal,", permitAll, "forbid ("}
	for i := range reloads {
		pdptest.WriteFiles(t, dir+"/policies", map[string]string{"p.cedar": contents[i%len(contents)]})
		_, err := pdptest.LoadNow(ctx, e, "storm")
		if broken := i%2 == 1; broken != (err != nil) {
			t.Fatalf("reload %d: broken=%v err=%v", i, broken, err)
		}
		if i == reloads/5 {
			early = heap()
		}
	}
	cancel()
	wg.Wait()
	late := heap()
	t.Logf("%d reloads, %d decisions meanwhile; heap in use %d KiB after %d reloads, %d KiB after %d", reloads, decided.Load(), early>>10, reloads/5, late>>10, reloads)
	if failed.Load() > 0 || decided.Load() == 0 {
		t.Errorf("%d decisions, %d failed", decided.Load(), failed.Load())
	}
	if late > early+16<<20 {
		t.Errorf("heap grew from %d to %d KiB over the reloads", early>>10, late>>10)
	}
}
