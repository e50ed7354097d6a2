package plugins

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// HTTPSink POSTs each batch as a JSONL body (gzip by default). 2xx
// acknowledges; 429 and 5xx are retried, honouring Retry-After; any other
// status is permanent: retrying the same batch cannot change the answer.
type HTTPSink struct {
	name   string
	url    string
	token  string
	gzip   bool
	client *http.Client
}

// RetryAfterError asks the shipper to wait at least After before retrying.
type RetryAfterError struct {
	Err   error
	After time.Duration
}

func (e *RetryAfterError) Error() string { return e.Err.Error() }
func (e *RetryAfterError) Unwrap() error { return e.Err }

// NewHTTPSink checks the configuration and reads the token file.
func NewHTTPSink(c Config) (*HTTPSink, error) {
	if err := Check(c); err != nil {
		return nil, err
	}
	s := &HTTPSink{name: c.Name, url: c.URL, gzip: c.Gzip == nil || *c.Gzip, client: &http.Client{Timeout: 30 * time.Second}}
	if c.TokenFile != "" {
		b, err := os.ReadFile(c.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("sink %s: token: %w", c.Name, err)
		}
		s.token = strings.TrimSpace(string(b))
	}
	return s, nil
}

// Name is the sink's name.
func (s *HTTPSink) Name() string { return s.name }

// Ship POSTs the batch.
func (s *HTTPSink) Ship(ctx context.Context, b *Batch) error {
	var body bytes.Buffer
	var w io.Writer = &body
	var zw *gzip.Writer
	if s.gzip {
		zw = gzip.NewWriter(&body)
		w = zw
	}
	for _, r := range b.Rows {
		w.Write(r)
		w.Write([]byte{'\n'})
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return fmt.Errorf("sink %s: gzip: %w", s.name, err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, &body)
	if err != nil {
		return Permanent(fmt.Errorf("sink %s: %w", s.name, err))
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("X-Agentpdp-Origin", b.Origin)
	req.Header.Set("X-Agentpdp-Seq-Range", fmt.Sprintf("%d-%d", b.FirstSeq, b.LastSeq))
	if s.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("sink %s: %w", s.name, err) // the network: retry
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode/100 == 5:
		err := fmt.Errorf("sink %s: %s: %s", s.name, resp.Status, bytes.TrimSpace(msg))
		if after, ok := retryAfter(resp.Header.Get("Retry-After")); ok {
			return &RetryAfterError{Err: err, After: after}
		}
		return err
	}
	return Permanent(fmt.Errorf("sink %s: %s: %s", s.name, resp.Status, bytes.TrimSpace(msg)))
}

// retryAfter reads Retry-After as seconds or an HTTP date.
func retryAfter(v string) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
}

// Close releases idle connections.
func (s *HTTPSink) Close() error {
	s.client.CloseIdleConnections()
	return nil
}
