package pdp_test

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// reportCPU reports the process's CPU time per operation (user and system,
// every thread: the server's goroutines, SQLite and the garbage collector
// included) from now until the returned func is called. On a loaded
// machine it is steadier than ns/op, which counts time spent waiting for a
// core.
func reportCPU(b *testing.B) func() {
	start := processCPU()
	return func() {
		b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op")
	}
}

func processCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
