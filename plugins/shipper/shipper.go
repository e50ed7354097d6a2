package shipper

import (
	"context"
	"encoding/json"
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

// Target is a sink, how big its batches are and where it starts.
type Target struct {
	Sink          plugins.Sink
	BatchSize     int   // rows; default 500
	BatchMaxBytes int64 // bytes of rows (before compression); default 4 MiB
	// Start is where a sink never seen before begins: decisionlog.StartOldest
	// (the default) or decisionlog.StartNow. It is recorded with the cursor
	// the first time, and a sink already seen keeps its recorded start.
	Start string
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

	once   sync.Once // init: Run, Once, Status and Collectors may be called from several goroutines
	mu     sync.Mutex
	status map[string]*SinkStatus

	rows, failures, tooLarge *prometheus.CounterVec
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
	// Stopped is set while the sink refuses batches for good (a 4xx): its
	// rows wait, retention keeps them, and the shipper retries once a
	// minute, so a fixed receiver needs no restart.
	Stopped bool `json:"stopped,omitempty"`
	// TooLarge counts rows the receiver refused even alone, shipped as
	// stubs (origin, seq, kind, time, hash, size, too_large).
	TooLarge int64 `json:"too_large,omitempty"`
	// Start, StartSeq and StartedAt are where the sink began, as recorded
	// with its cursor when it was first seen: start "now" ships the rows
	// after StartSeq, "oldest" every row.
	Start     string     `json:"start,omitempty"`
	StartSeq  int64      `json:"start_seq"`
	StartedAt *time.Time `json:"started_at,omitempty"`

	started bool // the start is recorded
}

// init sets defaults and the status table once, whichever method comes
// first.
func (s *Shipper) init() { s.once.Do(s.setup) }

func (s *Shipper) setup() {
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
		s.tooLarge = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentpdp_ship_too_large_rows_total", Help: "Rows the sink refused even alone, shipped as stubs."}, []string{"sink"})
	}
}

// Collectors are the shipper's Prometheus metrics, each sink's lag included.
func (s *Shipper) Collectors() []prometheus.Collector {
	s.init()
	cs := []prometheus.Collector{s.rows, s.failures, s.tooLarge}
	for _, t := range s.Targets {
		name := t.Sink.Name()
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "agentpdp_sink_stopped", Help: "1 while the sink refuses batches for good (its rows wait), else 0.", ConstLabels: prometheus.Labels{"sink": name},
		}, func() float64 {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.status[name].Stopped {
				return 1
			}
			return 0
		}))
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

// Start records where each sink starts, for the sinks never seen before
// (see [decisionlog.Cursors.Start]), and logs the start of each. Run and
// Once do it too; a daemon calls it first so that a sink with start: now
// begins when the daemon does, not when its goroutine first runs.
func (s *Shipper) Start(ctx context.Context) error {
	s.init()
	var errs []error
	for _, t := range s.Targets {
		if err := s.start(ctx, t); err != nil {
			errs = append(errs, sinkError(t.Sink.Name(), err))
		}
	}
	return errors.Join(errs...)
}

func (s *Shipper) start(ctx context.Context, t Target) error {
	name := t.Sink.Name()
	s.mu.Lock()
	done := s.status[name].started
	s.mu.Unlock()
	if done {
		return nil
	}
	mode := t.Start
	if mode == "" {
		mode = decisionlog.StartOldest
	}
	st, err := s.Cursors.Start(ctx, name, mode)
	if err != nil {
		return err
	}
	log := s.Logger.With("sink", name)
	switch {
	case st.Start != mode:
		log.Warn("the sink keeps the start recorded when it was first seen; the configured start applies only to a sink never seen before (give it a new name to start over)",
			"configured_start", mode, "start", st.Start, "start_seq", st.StartSeq, "cursor", st.Seq)
	case st.Start == decisionlog.StartNow:
		log.Info("the sink ships the rows after its start (start: now); the rows before stay in the local log only",
			"start_seq", st.StartSeq, "started_at", st.Started, "cursor", st.Seq)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.status[name]
	ss.Start, ss.StartSeq, ss.StartedAt, ss.started = st.Start, st.StartSeq, st.Started, true
	if st.Seq > ss.Cursor {
		ss.Cursor = st.Seq
	}
	return nil
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
//
// It adapts to the receiver: a batch holds at most BatchSize rows and
// BatchMaxBytes bytes; a "too large" answer halves the batch and retries at
// once; a row refused alone is shipped as a stub that keeps the seq and
// hash (so continuity stays checkable upstream) and is counted. A sink that
// refuses for good is marked stopped (status, log, metric) and retried
// once a minute.
func (s *Shipper) runSink(ctx context.Context, t Target, once bool) error {
	name := t.Sink.Name()
	size := t.BatchSize
	if size <= 0 {
		size = 500
	}
	maxBytes := t.BatchMaxBytes
	if maxBytes <= 0 {
		maxBytes = 4 << 20
	}
	limit := size // rows per batch now: halved by "too large", regrown on success
	backoff := s.MinBackoff
	log := s.Logger.With("sink", name)
	for ctx.Err() == nil {
		if err := s.start(ctx, t); err != nil {
			s.failed(name, err)
			if once {
				return sinkError(name, err)
			}
			sleep(ctx, s.Interval)
			continue
		}
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
		var bytes int64
		err = s.Reader.ScanFilter(ctx, decisionlog.Filter{FromSeq: cursor + 1}, func(e *decisionlog.Entry) error {
			row, err := shippedRow(s.Origin, e)
			if err != nil {
				return err
			}
			if len(b.Rows) > 0 && bytes+int64(len(row)) > maxBytes {
				return errBatchFull
			}
			if b.FirstSeq == 0 {
				b.FirstSeq = e.Seq
			}
			b.LastSeq = e.Seq
			b.Rows = append(b.Rows, row)
			bytes += int64(len(row))
			if len(b.Rows) >= limit {
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
		var stubbed bool
		if plugins.IsTooLarge(err) && len(b.Rows) == 1 {
			// Refused alone: ship what keeps the chain checkable upstream.
			log.Warn("the receiver refused a row even alone; shipping a stub with its seq, hash and size", "seq", b.FirstSeq, "size", len(b.Rows[0]), "err", err)
			stub, serr := stubRow(b.Rows[0])
			if serr != nil {
				err = plugins.Permanent(serr)
			} else {
				b.Rows[0] = stub
				err = t.Sink.Ship(ctx, b)
				stubbed = err == nil
			}
		}
		if err == nil {
			if err := s.Cursors.Advance(ctx, name, b.LastSeq); err != nil {
				// Shipped but not recorded: it ships again (at least once).
				s.failed(name, err)
				continue
			}
			s.shipped(name, b, stubbed)
			backoff = s.MinBackoff
			limit = min(limit*2, size)
			continue
		}
		s.failed(name, err)
		if plugins.IsTooLarge(err) && len(b.Rows) > 1 {
			limit = max(len(b.Rows)/2, 1)
			log.Info("the receiver refused a batch as too large; splitting it", "rows", len(b.Rows), "bytes", bytes, "next_rows", limit)
			continue
		}
		if once {
			return sinkError(name, err)
		}
		wait := backoff/2 + rand.N(backoff/2+1) // jitter, so many daemons do not retry in step
		var ra *plugins.RetryAfterError
		if errors.As(err, &ra) && ra.After > wait {
			wait = ra.After
		}
		if plugins.IsPermanent(err) {
			log.Error("sink refuses batches for good; its rows wait, and retention keeps them; retrying in a minute",
				"first_seq", b.FirstSeq, "last_seq", b.LastSeq, "err", err)
			s.setStopped(name, true)
			wait = max(wait, time.Minute)
		} else {
			log.Warn("ship failed; retrying", "err", err, "retry_in", wait)
		}
		sleep(ctx, wait)
		backoff = min(backoff*2, time.Minute)
	}
	return ctx.Err()
}

// stubRow is what ships in place of a row the receiver refused alone: its
// origin, seq, kind, time and chain hash, its size in bytes, and
// too_large: true.
func stubRow(row []byte) ([]byte, error) {
	var r struct {
		Origin string `json:"origin"`
		Seq    int64  `json:"seq"`
		Kind   string `json:"kind"`
		Time   string `json:"time"`
		Hash   string `json:"hash"`
	}
	if err := json.Unmarshal(row, &r); err != nil {
		return nil, fmt.Errorf("stub of a refused row: %w", err)
	}
	return json.Marshal(map[string]any{"origin": r.Origin, "seq": r.Seq, "kind": r.Kind, "time": r.Time, "hash": r.Hash,
		"size": len(row), "too_large": true})
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

func (s *Shipper) shipped(name string, b *plugins.Batch, stub bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status[name]
	st.Cursor, st.Shipped = b.LastSeq, st.Shipped+int64(len(b.Rows))
	st.LastError, st.LastErrorAt, st.Stopped = "", nil, false
	s.rows.WithLabelValues(name).Add(float64(len(b.Rows)))
	if stub {
		st.TooLarge++
		s.tooLarge.WithLabelValues(name).Inc()
	}
}

func (s *Shipper) setStopped(name string, stopped bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status[name].Stopped = stopped
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

// sinkError names the sink in err. A sink's errors never name the sink
// (the shipper is the one that knows which sink it fed), so the name
// appears once; the status keeps err without it, beside the sink's name.
func sinkError(name string, err error) error {
	return fmt.Errorf("sink %s: %w", name, err)
}
