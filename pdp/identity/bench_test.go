package identity_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/internal/pdptest"
)

// cpuTime is the process's user+system CPU time so far (getrusage).
func cpuTime(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkVerify_RepeatedToken verifies one ES256 token over and over, as
// an agent that reuses its token for minutes makes the daemon do. cpu-ns/op
// is the process's CPU (rusage) per verification, GC included.
func BenchmarkVerify_RepeatedToken(b *testing.B) {
	clk := newClock()
	key := pdptest.NewSigner(b, "k1")
	v, _ := fileVerifier(b, clk, key)
	tok := key.Sign(b, std("https://idp.example", "billing-bot", t0, 10*time.Minute), map[string]any{"scope": "invoices:read"})
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.Run("Serial", func(b *testing.B) {
		b.ReportAllocs()
		start := cpuTime(b)
		for b.Loop() {
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
	})
	b.Run("Parallel", func(b *testing.B) {
		b.ReportAllocs()
		start := cpuTime(b)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := v.Verify(ctx, tok); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
	})
}
