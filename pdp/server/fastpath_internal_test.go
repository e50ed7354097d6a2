package server

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/agentpdp/agentpdp/pdp/wire"
)

// readHead reads what io.ReadAll(io.LimitReader(r, n)) reads, whatever the
// Content-Length says: right, unknown, short, long, or over the limit.
func TestReadHeadIsLimitedReadAll(t *testing.T) {
	body := strings.Repeat("0123456789", 70)
	for _, c := range []struct {
		name    string
		body    string
		n, size int64
	}{
		{"Known", body, 1 << 20, int64(len(body))},
		{"Unknown", body, 1 << 20, -1},
		{"SaysShorter", body, 1 << 20, 10},
		{"SaysLonger", body, 1 << 20, int64(len(body)) + 100},
		{"Empty", "", 1 << 20, 0},
		{"AtLimit", body, int64(len(body)) + 1, int64(len(body))},
		{"OverLimit", body, 100, int64(len(body))},
		{"OverLimitUnknown", body, 100, -1},
	} {
		for _, slow := range []bool{false, true} {
			var r, ref io.Reader = strings.NewReader(c.body), strings.NewReader(c.body)
			if slow {
				r = iotest.OneByteReader(r)
			}
			got, err := readHead(r, c.n, c.size)
			want, _ := io.ReadAll(io.LimitReader(ref, c.n))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s (one byte at a time %v): read %d bytes, %v; want %d", c.name, slow, len(got), err, len(want))
			}
		}
	}
	boom := errors.New("connection reset")
	if _, err := readHead(iotest.TimeoutReader(strings.NewReader(body)), 1<<20, int64(len(body))); err == nil {
		t.Error("a failed read is not an error")
	}
	if _, err := readHead(io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(boom)), 1<<20, 3); !errors.Is(err, boom) {
		t.Errorf("got %v, want %v", err, boom)
	}
}

// decided counts each answer under its verdict, and a verdict never given
// is not exposed (as with WithLabelValues on every decision).
func TestMetricsDecided(t *testing.T) {
	m := NewMetrics()
	m.decided([]*wire.Decision{{Decision: wire.Allow}, {Decision: wire.Deny}}, time.Now())
	m.decided([]*wire.Decision{{Decision: wire.Allow}}, time.Now())
	mfs, err := m.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	var observed uint64
	for _, mf := range mfs {
		switch mf.GetName() {
		case "agentpdp_decisions_total":
			for _, mt := range mf.GetMetric() {
				got[mt.GetLabel()[0].GetValue()] = mt.GetCounter().GetValue()
			}
		case "agentpdp_decision_duration_seconds":
			observed = mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	if len(got) != 2 || got["allow"] != 2 || got["deny"] != 1 {
		t.Errorf("agentpdp_decisions_total %v, want allow 2, deny 1 and no step_up", got)
	}
	if observed != 3 {
		t.Errorf("%d latencies observed, want 3", observed)
	}
}
