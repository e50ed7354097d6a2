package decisionlog_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
)

// TestWAL_BoundedBehindAStalledReader: an export whose consumer stops (a
// pipe nobody reads) while 64 clients write. A scan used to hold one read
// transaction from its first row to its last, pinning the WAL, and the WAL
// file kept its largest size after (356 MB in the reported case). Now the
// scan holds no transaction while its consumer waits, sees every row once
// in order across its chunks, and the WAL file is truncated back to
// journal_size_limit (64 MiB) once the load stops.
func TestWAL_BoundedBehindAStalledReader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.db")
	l := open(t, path, decisionlog.Options{Durability: decisionlog.DurabilityNormal})
	pad := strings.Repeat("x", 2000)
	for i := range 3000 { // enough rows that the scan has several chunks
		if err := l.Append(t.Context(), decision(fmt.Sprintf("seed-%d-%s", i, pad), "a", "allow")); err != nil {
			t.Fatal(err)
		}
	}
	r, err := decisionlog.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	// The stalled reader: its consumer blocks on the first row.
	release := make(chan struct{})
	scanned := make(chan error, 1)
	var seen atomic.Int64
	go func() {
		scanned <- r.Scan(context.Background(), 1, func(e *decisionlog.Entry) error {
			if n := seen.Add(1); n == 1 {
				<-release
			} else if e.Seq != n {
				return fmt.Errorf("scan: seq %d as row %d", e.Seq, n)
			}
			return nil
		})
	}()
	for seen.Load() == 0 {
		time.Sleep(time.Millisecond)
	}

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var written atomic.Int64
	for c := range 64 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				if err := l.Append(ctx, decision(fmt.Sprintf("c%d-%d-%s", c, i, pad), "a", "allow")); err != nil {
					if ctx.Err() == nil {
						t.Error(err)
					}
					return
				}
				written.Add(1)
			}
		})
	}
	var peak int64
	start := time.Now()
	for time.Since(start) < 4*time.Second || written.Load() < walTestRows {
		peak = max(peak, r.WALBytes())
		if time.Since(start) > 60*time.Second {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	close(release)
	if err := <-scanned; err != nil {
		t.Fatal(err)
	}
	rows := written.Load()
	t.Logf("64 writers, %d rows of about 2.2 KB in %v behind a stalled reader: WAL peak %.1f MB", rows, time.Since(start).Round(time.Millisecond), float64(peak)/1e6)
	if seen.Load() < 3000 {
		t.Errorf("the scan saw %d rows", seen.Load())
	}

	// After the load, one more commit and checkpoint: the WAL is truncated
	// back to journal_size_limit at most when it starts over.
	if peak <= 64<<20 {
		t.Logf("the WAL never passed 64 MiB; nothing to truncate")
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.WALBytes() > 64<<20 {
		l.Append(t.Context(), decision("after", "a", "allow"))
		if time.Now().After(deadline) {
			t.Fatalf("WAL still %d bytes after the load", r.WALBytes())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// walTestRows is how many rows the 64 writers write behind the stalled
// reader.
var walTestRows int64 = 20000
