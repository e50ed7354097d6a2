package decisionlog_test

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
)

// A decision body of typical size (about 900 bytes).
var benchBody = json.RawMessage(`{"decision_id":"01a21ace-165e-7225-92fb-439b5856ea30","decision":"allow","principal":"Agent::\"billing-bot\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"sql.query\"",` +
	`"reasons":[{"policy":"agents-may-invoke-tools","effect":"permit","file":"policies/agents.cedar","line":7}],"errors":[],"policy_version":"sha256:1c186f9fcc95ad0b4fa7c032cb97fb929cccba2d81b0d1d3184a9b70ba5c14a7","on_error":"deny",` +
	`"request":{"principal":{"type":"Agent","id":"billing-bot"},"action":{"type":"Action","id":"invoke_tool"},"resource":{"type":"Tool","id":"sql.query"},"context":{"args":{"limit":10,"query":"select 1"}},` +
	`"entities":[{"uid":{"type":"Agent","id":"billing-bot"},"attrs":{"owner":"alice","trust":"standard"},"parents":[{"type":"Team","id":"finance"}]}],` +
	`"session_id":"s-42","task_id":"t-7","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","on_behalf_of":"alice@example.com","prompt":"hmac-sha256:` + strings.Repeat("ab", 32) + `"},` +
	`"peer":{"pid":4242,"uid":1000,"gid":1000,"exe":"/usr/bin/python3.11"},"eval_ns":21000}`)

// BenchmarkAppend measures the writer alone: entries/s at a given number of
// concurrent appenders, which is what sets the group size.
func BenchmarkAppend(b *testing.B) {
	for _, durability := range []decisionlog.Durability{decisionlog.DurabilityFull, decisionlog.DurabilityNormal} {
		for _, writers := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("durability=%s/writers=%d", durability, writers), func(b *testing.B) {
				l, err := decisionlog.Open(b.Context(), filepath.Join(b.TempDir(), "d.db"), decisionlog.Options{Durability: durability})
				if err != nil {
					b.Fatal(err)
				}
				defer l.Close(b.Context())
				b.SetParallelism(max(1, writers/2)) // GOMAXPROCS is 2 here
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := l.Append(b.Context(), &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: benchBody}); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.StopTimer()
				st := l.WriterStats()
				b.ReportMetric(float64(st.Entries)/float64(max(st.Commits, 1)), "entries/commit")
				if s, err := l.Stats(b.Context()); err == nil && s.Rows > 0 {
					b.ReportMetric(float64(s.Bytes)/float64(s.Rows), "bytes/row")
				}
			})
		}
	}
}

// BenchmarkVerify verifies a log of a million rows (built once, signed every
// 1000 rows) and reports rows/s and the most heap seen while verifying,
// which must stay flat however long the log: rows are streamed.
func BenchmarkVerify(b *testing.B) {
	const rows = 1_000_000
	priv, pub := benchKey(b)
	path := filepath.Join(b.TempDir(), "million.db")
	l, err := decisionlog.Open(b.Context(), path, decisionlog.Options{Durability: decisionlog.DurabilityNormal, SigningKey: priv, MaxBatch: 4096})
	if err != nil {
		b.Fatal(err)
	}
	batch := make([]*decisionlog.Entry, 1000)
	for written := 0; written < rows; written += len(batch) {
		for i := range batch {
			batch[i] = &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: benchBody}
		}
		if err := l.Append(b.Context(), batch...); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Close(b.Context()); err != nil {
		b.Fatal(err)
	}
	r, err := decisionlog.OpenReader(path)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	var peak uint64
	var ms runtime.MemStats
	b.ResetTimer()
	for b.Loop() {
		rep, err := r.Verify(b.Context(), decisionlog.VerifyOptions{PublicKey: pub, Progress: func(seq, last int64) {
			if seq%100000 == 0 {
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
		}})
		if err != nil {
			b.Fatal(err)
		}
		if rep.Rows < rows || rep.Checkpoints < rows/1000 {
			b.Fatalf("report: %+v", rep)
		}
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}

func benchKey(b *testing.B) (ed25519.PrivateKey, ed25519.PublicKey) {
	privPEM, pubPEM, err := decisionlog.GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	priv, _ := decisionlog.ParsePrivateKey(privPEM)
	pub, _ := decisionlog.ParsePublicKey(pubPEM)
	return priv, pub
}

// BenchmarkProof1M proves and checks rows of a million-row log (built
// directly through the writer, 10,000 rows a commit, signed every 1000
// rows): the time for log prove's work and verify-proof's, and the size of
// the proof file.
func BenchmarkProof1M(b *testing.B) {
	const rows = 1_000_000
	priv, pub := benchKey(b)
	path := filepath.Join(b.TempDir(), "million.db")
	l, err := decisionlog.Open(b.Context(), path, decisionlog.Options{Durability: decisionlog.DurabilityNormal, SigningKey: priv})
	if err != nil {
		b.Fatal(err)
	}
	batch := make([]*decisionlog.Entry, 10_000)
	for written := 0; written < rows; written += len(batch) {
		for i := range batch {
			batch[i] = &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: benchBody}
		}
		if err := l.Append(b.Context(), batch...); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Close(b.Context()); err != nil {
		b.Fatal(err)
	}
	r, err := decisionlog.OpenReader(path)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	last, _ := r.LastSeq(b.Context())
	seqs := []int64{1, last / 3, last / 2, last - 2}
	var file []byte
	b.Run("prove", func(b *testing.B) {
		i := 0
		for b.Loop() {
			p, err := r.ProveRow(b.Context(), seqs[i%len(seqs)])
			if err != nil {
				b.Fatal(err)
			}
			if file, err = json.Marshal(p); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(len(file)), "proof-bytes")
	})
	b.Run("verify-proof", func(b *testing.B) {
		for b.Loop() {
			if _, err := decisionlog.VerifyProof(file, pub); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("prove-consistency", func(b *testing.B) {
		for b.Loop() {
			p, err := r.ProveConsistency(b.Context(), 1000, last-1)
			if err != nil {
				b.Fatal(err)
			}
			if file, err = json.Marshal(p); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(file)), "proof-bytes")
	})
}

// BenchmarkAppendBatch is the writer's CPU per row without fsync waits:
// one appender, 1000 rows a commit, durability normal.
func BenchmarkAppendBatch(b *testing.B) {
	l, err := decisionlog.Open(b.Context(), filepath.Join(b.TempDir(), "d.db"), decisionlog.Options{Durability: decisionlog.DurabilityNormal, MaxBatch: 1000})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close(b.Context())
	batch := make([]*decisionlog.Entry, 1000)
	for b.Loop() {
		for i := range batch {
			batch[i] = &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: benchBody}
		}
		if err := l.Append(b.Context(), batch...); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/row")
}
