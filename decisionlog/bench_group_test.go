package decisionlog_test

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
)

// decisionBodies are rows as the daemon writes them for agentpdp bench's
// mix (an allow, a deny and a step_up, about 1.5 KB each), read from
// testdata/decisions.jsonl.
func decisionBodies(tb testing.TB) [][]byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "decisions.jsonl"))
	if err != nil {
		tb.Fatal(err)
	}
	return bytes.Split(bytes.TrimSpace(b), []byte("\n")) // one JSON object a line
}

// groupEntries makes n decision entries from bodies, each with its own
// decision_id (the sample's, its last 12 hex digits replaced by a
// counter, so the index on decision_id grows as the daemon's does) and the
// provenance keys the engine gives.
func groupEntries(bodies [][]byte, n int, counter *int) []*decisionlog.Entry {
	es := make([]*decisionlog.Entry, n)
	for i := range es {
		*counter++
		src := bodies[*counter%len(bodies)]
		body := bytes.Clone(src)
		// "decision_id":"01a22b31-bee1-7c15-9f64-5593bf7c793a": the id's
		// last 12 characters end at offset 15+36.
		copy(body[15+36-12:], fmt.Sprintf("%012x", *counter))
		keys := columnKeys(body)
		keys.Principal, keys.SessionID, keys.TraceID = `Agent::"agent-40"`, "s-40", fmt.Sprintf("%032x", *counter)
		es[i] = &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: body, Keys: keys}
	}
	return es
}

// columnKeys are Keys with the log table's columns of body set, read from
// it as the engine knows them: the values at their paths, NULL where the
// body has none.
func columnKeys(body []byte) *decisionlog.Keys {
	var rec struct {
		DecisionID *string `json:"decision_id"`
		Decision   *string `json:"decision"`
		Request    *struct {
			ParentDecisionID *string `json:"parent_decision_id"`
			Approval         *string `json:"approval"`
		} `json:"request"`
		Shadow *struct {
			Decision *string `json:"decision"`
		} `json:"shadow"`
	}
	if err := json.Unmarshal(body, &rec); err != nil {
		panic(err)
	}
	v := func(s *string) sql.NullString {
		if s == nil {
			return sql.NullString{}
		}
		return sql.NullString{String: *s, Valid: true}
	}
	k := &decisionlog.Keys{DecisionID: v(rec.DecisionID), Decision: v(rec.Decision)}
	if r := rec.Request; r != nil {
		k.ParentDecisionID, k.ApprovalID = v(r.ParentDecisionID), v(r.Approval)
	}
	if s := rec.Shadow; s != nil {
		k.ShadowDecision = v(s.Decision)
	}
	return k
}

// BenchmarkAppendGroup is the writer's cost per row as the daemon pays it
// under load: realistic decision bodies, a signing key (so checkpoints
// every 1000 rows and the tail state file), durability normal (so fsync
// waits do not hide CPU), in commits of `rows` rows. One op is one row:
// ns/op and allocs/op are per row; cpu-ns/row is the process's user+system
// CPU (the writer, the checkpointer and the indexer); cgo/row counts calls
// into SQLite.
func BenchmarkAppendGroup(b *testing.B) {
	bodies := decisionBodies(b)
	priv, _ := benchKey(b)
	for _, rows := range []int{16, 64} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			l, err := decisionlog.Open(b.Context(), filepath.Join(b.TempDir(), "d.db"), decisionlog.Options{Durability: decisionlog.DurabilityNormal, SigningKey: priv})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close(b.Context())
			counter := 0
			// Groups are made before the clock starts: making them is the
			// engine's work, not the writer's.
			groups := make([][]*decisionlog.Entry, (b.N+rows-1)/rows)
			for i := range groups {
				groups[i] = groupEntries(bodies, min(rows, b.N-i*rows), &counter)
			}
			runtime.GC()
			cpu0, cgo0 := processCPU(), runtime.NumCgoCall()
			b.ResetTimer()
			for _, g := range groups {
				if err := l.Append(b.Context(), g...); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/row")
			b.ReportMetric(float64(runtime.NumCgoCall()-cgo0)/float64(b.N), "cgo/row")
		})
	}
}

// processCPU is the process's user and system CPU time so far, in ns.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
