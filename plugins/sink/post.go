package sink

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

	"github.com/agentpdp/agentpdp/plugins"
)

// poster is what the http and otlp sinks share: a bearer token read from a
// file, optional gzip, and turning an HTTP answer into ack, retryable
// (honouring Retry-After) or permanent.
type poster struct {
	name      string
	url       string
	token     string
	gzip      bool
	client    *http.Client
	retryable func(status int) bool
}

func newPoster(c Config, url string, retryable func(int) bool) (*poster, error) {
	p := &poster{name: c.Name, url: url, gzip: c.Gzip == nil || *c.Gzip, client: &http.Client{Timeout: 30 * time.Second}, retryable: retryable}
	if c.TokenFile != "" {
		b, err := os.ReadFile(c.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("sink %s: token: %w", c.Name, err)
		}
		p.token = strings.TrimSpace(string(b))
	}
	return p, nil
}

// post sends payload; header sets request-specific headers.
func (p *poster) post(ctx context.Context, contentType string, payload []byte, header http.Header) error {
	body := payload
	if p.gzip {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(payload)
		if err := zw.Close(); err != nil {
			return fmt.Errorf("sink %s: gzip: %w", p.name, err)
		}
		body = buf.Bytes()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return plugins.Permanent(fmt.Errorf("sink %s: %w", p.name, err))
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", contentType)
	if p.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("sink %s: %w", p.name, err) // the network: retry
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	err = fmt.Errorf("sink %s: %s: %s", p.name, resp.Status, bytes.TrimSpace(msg))
	if !p.retryable(resp.StatusCode) {
		return plugins.Permanent(err)
	}
	if after, ok := retryAfter(resp.Header.Get("Retry-After")); ok {
		return &plugins.RetryAfterError{Err: err, After: after}
	}
	return err
}

func (p *poster) close() { p.client.CloseIdleConnections() }

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
