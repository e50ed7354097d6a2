package server

import (
	"context"
	"math"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// Metrics are the daemon's Prometheus metrics, served on the admin socket at
// GET /metrics. A nil *Metrics records nothing, so embedders may go without.
type Metrics struct {
	registry      *prometheus.Registry
	decisions     *prometheus.CounterVec
	byVerdict     [3]atomic.Pointer[prometheus.Counter] // decisions' child for wire.Verdicts[i], made at its first decision
	rejected      *prometheus.CounterVec
	latency       prometheus.Histogram
	commitLatency prometheus.Histogram
	commitEntries prometheus.Histogram
	commitErrors  prometheus.Counter
}

// NewMetrics makes the metrics, with the Go runtime's and the process's.
func NewMetrics() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentpdp_decisions_total", Help: "Decisions answered (and logged), by answer.",
		}, []string{"decision"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentpdp_requests_rejected_total", Help: "Authorization requests answered without a decision, by reason: bad_request (400) or unavailable (503).",
		}, []string{"reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "agentpdp_decision_duration_seconds", Help: "From a request's arrival to its answer, durable commit included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		commitLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "agentpdp_log_commit_duration_seconds", Help: "Duration of each decision log commit (group commit), fsync included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		commitEntries: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "agentpdp_log_commit_entries", Help: "Entries per decision log commit: the group in group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentpdp_log_commit_failures_total", Help: "Decision log commits that failed; their requests were answered 503.",
		}),
	}
	m.registry.MustRegister(m.decisions, m.rejected, m.latency, m.commitLatency, m.commitEntries, m.commitErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveCommit is a decisionlog.Options.OnCommit.
func (m *Metrics) ObserveCommit(entries int, took time.Duration, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.commitErrors.Inc()
		return
	}
	m.commitLatency.Observe(took.Seconds())
	m.commitEntries.Observe(float64(entries))
}

// WatchEngine adds the engine's reload counts, read at each scrape.
func (m *Metrics) WatchEngine(e *pdp.Engine) {
	if m == nil {
		return
	}
	m.registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "agentpdp_policy_reloads_total", Help: "Policy loads attempted, the first included."},
			func() float64 { return float64(e.Status().Reloads) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "agentpdp_policy_reload_failures_total", Help: "Policy loads refused; the previous policies kept serving."},
			func() float64 { return float64(e.Status().ReloadFailures) }),
		// As Prometheus's own prometheus_config_last_reload_successful: a
		// counter says failures happened, this says whether they still do.
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "agentpdp_policy_last_reload_successful",
			Help: "1 if the last policy load was served (or was the version already serving), 0 while loads are refused and the previous policies keep serving."},
			func() float64 {
				if e.Status().LastReloadOK {
					return 1
				}
				return 0
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "agentpdp_shared_identity_total",
			Help: "Decisions whose principal another executable or uid used within the shared-identity window (shared_identity in the row)."},
			func() float64 { return float64(e.SharedIdentities()) }),
	)
}

// WatchLog adds how far the log's provenance index lags behind the log,
// read at each scrape: a lag that keeps growing means queries by principal,
// session, trace… scan more and more of the log.
func (m *Metrics) WatchLog(l *decisionlog.Log) {
	if m == nil {
		return
	}
	m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "agentpdp_log_index_lag_rows", Help: "Rows of the decision log the provenance index does not cover yet (the whole log if there is no index).",
	}, func() float64 {
		last, err := l.LastSeq(context.Background())
		if err != nil {
			return math.NaN()
		}
		indexed, _, err := l.IndexedThrough(context.Background())
		if err != nil {
			return math.NaN()
		}
		return float64(last - indexed)
	}))
	m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "agentpdp_log_wal_bytes", Help: "Size of the decision log's write-ahead log file, in bytes.",
	}, func() float64 { return float64(l.WALBytes()) }))
}

// Register adds collectors of other components (the shipper's, say).
func (m *Metrics) Register(cs ...prometheus.Collector) {
	if m != nil {
		m.registry.MustRegister(cs...)
	}
}

func (m *Metrics) decided(ds []*wire.Decision, start time.Time) {
	if m == nil {
		return
	}
	took := time.Since(start).Seconds()
	for _, d := range ds {
		m.decisionCounter(d.Decision).Inc()
		m.latency.Observe(took)
	}
}

// decisionCounter is agentpdp_decisions_total{decision=v}. The children are
// kept rather than looked up by label on every decision, and made at a
// verdict's first decision, as WithLabelValues makes them (a verdict never
// given is not exposed).
func (m *Metrics) decisionCounter(v wire.Verdict) prometheus.Counter {
	i := slices.Index(wire.Verdicts, v)
	if i < 0 || i >= len(m.byVerdict) {
		return m.decisions.WithLabelValues(string(v))
	}
	if c := m.byVerdict[i].Load(); c != nil {
		return *c
	}
	c := m.decisions.WithLabelValues(string(v))
	m.byVerdict[i].Store(&c)
	return c
}

func (m *Metrics) reject(status int) {
	if m == nil {
		return
	}
	reason := "unavailable"
	if status < 500 {
		reason = "bad_request"
	}
	m.rejected.WithLabelValues(reason).Inc()
}

func (m *Metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}
