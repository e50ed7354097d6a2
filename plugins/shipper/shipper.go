package shipper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/plugins"
)

// Target is a sink and how big its batches are.
type Target struct {
	Sink      plugins.Sink
	BatchSize int // default 500
}

// Shipper feeds every sink from its cursor. A sink that is down makes its
// rows wait, never drops them, and never slows decisions: it only reads.
type Shipper struct {
	Reader   *decisionlog.Reader
	Cursors  *decisionlog.Cursors
	Origin   string
	Targets  []Target
	Interval time.Duration // how often an idle sink looks for new rows; default 1s
	// MinBackoff is the first wait after a failure, doubled (with jitter)
	// up to a minute; default 500ms. Retry-After is honoured when longer.
	MinBackoff time.Duration
	Logger     *slog.Logger

	mu     sync.Mutex
	status map[string]*SinkStatus

	rows, failures *prometheus.CounterVec
}

// SinkStatus is what GET /v1/status shows of a sink.
type SinkStatus struct {
	Sink        string     `json:"sink"`
	Cursor      int64      `json:"cursor"`
	Lag         int64      `json:"lag"` // rows written but not yet acknowledged
	Shipped     int64      `json:"shipped"`
	Failures    int64      `json:"failures"`
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
	Stopped     bool       `json:"stopped,omitempty"` // after a permanent error, until restart
}

func (s *Shipper) init() {
	if s.Interval <= 0 {
		s.Interval = time.Second
	}
	if s.MinBackoff <= 0 {
		s.MinBackoff = 500 * time.Millisecond
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.status == nil {
		s.status = map[string]*SinkStatus{}
		for _, t := range s.Targets {
			s.status[t.Sink.Name()] = &SinkStatus{Sink: t.Sink.Name()}
		}
		s.rows = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentpdp_ship_rows_total", Help: "Rows acknowledged by each sink."}, []string{"sink"})
		s.failures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentpdp_ship_failures_total", Help: "Failed attempts to ship a batch, by sink."}, []string{"sink"})
	}
}

// Collectors are the shipper's Prometheus metrics, each sink's lag included.
func (s *Shipper) Collectors() []prometheus.Collector {
	s.init()
	cs := []prometheus.Collector{s.rows, s.failures}
	for _, t := range s.Targets {
		name := t.Sink.Name()
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "agentpdp_ship_lag_rows", Help: "Rows written but not yet acknowledged by the sink.", ConstLabels: prometheus.Labels{"sink": name},
		}, func() float64 {
			last, err := s.Reader.LastSeq(context.Background())
			if err != nil {
				return 0
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			return float64(max(last-s.status[name].Cursor, 0))
		}))
	}
	return cs
}

// Status reports every sink's cursor and lag.
func (s *Shipper) Status(ctx context.Context) []SinkStatus {
	s.init()
	last, err := s.Reader.LastSeq(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []SinkStatus
	for _, t := range s.Targets {
		st := *s.status[t.Sink.Name()]
		if err == nil {
			st.Lag = max(last-st.Cursor, 0)
		}
		out = append(out, st)
	}
	return out
}

// Run ships until ctx ends, one goroutine per sink.
func (s *Shipper) Run(ctx context.Context) {
	s.init()
	var wg sync.WaitGroup
	for _, t := range s.Targets {
		wg.Go(func() { s.runSink(ctx, t, false) })
	}
	wg.Wait()
}

// Once ships every row written so far to every sink and returns; an error
// names the sinks that could not finish.
func (s *Shipper) Once(ctx context.Context) error {
	s.init()
	var errs []error
	for _, t := range s.Targets {
		if err := s.runSink(ctx, t, true); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

var errBatchFull = errors.New("batch full")

// runSink ships to one sink. With once, it returns when caught up, or at
// the first failure.
func (s *Shipper) runSink(ctx context.Context, t Target, once bool) error {
	name := t.Sink.Name()
	size := t.BatchSize
	if size <= 0 {
		size = 500
	}
	backoff := s.MinBackoff
	log := s.Logger.With("sink", name)
	for ctx.Err() == nil {
		cursor, err := s.Cursors.Get(ctx, name)
		if err != nil {
			s.failed(name, err)
			if once {
				return err
			}
			sleep(ctx, s.Interval)
			continue
		}
		s.setCursor(name, cursor)
		b := &plugins.Batch{Origin: s.Origin}
		err = s.Reader.ScanFilter(ctx, decisionlog.Filter{FromSeq: cursor + 1}, func(e *decisionlog.Entry) error {
			row, err := shippedRow(s.Origin, e)
			if err != nil {
				return err
			}
			if b.FirstSeq == 0 {
				b.FirstSeq = e.Seq
			}
			b.LastSeq = e.Seq
			b.Rows = append(b.Rows, row)
			if len(b.Rows) >= size {
				return errBatchFull
			}
			return nil
		})
		if err != nil && !errors.Is(err, errBatchFull) {
			s.failed(name, err)
			if once {
				return err
			}
			sleep(ctx, s.Interval)
			continue
		}
		if len(b.Rows) == 0 {
			if once {
				return nil
			}
			sleep(ctx, s.Interval)
			continue
		}
		err = t.Sink.Ship(ctx, b)
		if err == nil {
			if err := s.Cursors.Advance(ctx, name, b.LastSeq); err != nil {
				// Shipped but not recorded: it ships again (at least once).
				s.failed(name, err)
				continue
			}
			s.shipped(name, b)
			backoff = s.MinBackoff
			continue
		}
		s.failed(name, err)
		if plugins.IsPermanent(err) {
			log.Error("sink refused a batch for good; its rows wait, and retention keeps them, until it is fixed and restarted",
				"first_seq", b.FirstSeq, "last_seq", b.LastSeq, "err", err)
			s.mu.Lock()
			s.status[name].Stopped = true
			s.mu.Unlock()
			return fmt.Errorf("sink %s: %w", name, err)
		}
		if once {
			return fmt.Errorf("sink %s: %w", name, err)
		}
		wait := backoff/2 + rand.N(backoff/2+1) // jitter, so many daemons do not retry in step
		var ra *plugins.RetryAfterError
		if errors.As(err, &ra) && ra.After > wait {
			wait = ra.After
		}
		log.Warn("ship failed; retrying", "err", err, "retry_in", wait)
		sleep(ctx, wait)
		backoff = min(backoff*2, time.Minute)
	}
	return ctx.Err()
}

// shippedRow is the row as a JSON object with origin first.
func shippedRow(origin string, e *decisionlog.Entry) ([]byte, error) {
	b, err := e.MarshalJSON()
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(b)+len(origin)+16)
	out = append(out, `{"origin":`...)
	out = fmt.Appendf(out, "%q,", origin)
	return append(out, b[1:]...), nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (s *Shipper) setCursor(name string, seq int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status[name].Cursor = seq
}

func (s *Shipper) shipped(name string, b *plugins.Batch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status[name]
	st.Cursor, st.Shipped = b.LastSeq, st.Shipped+int64(len(b.Rows))
	st.LastError, st.LastErrorAt = "", nil
	s.rows.WithLabelValues(name).Add(float64(len(b.Rows)))
}

func (s *Shipper) failed(name string, err error) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status[name]
	st.Failures++
	st.LastError, st.LastErrorAt = err.Error(), &now
	s.failures.WithLabelValues(name).Inc()
}
