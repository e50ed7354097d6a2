package sink

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
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
// file, TLS (a CA file, a client certificate), a timeout, optional gzip,
// and turning an HTTP answer into ack, too large, retryable (honouring
// Retry-After) or permanent, with the receiver's message decoded.
type poster struct {
	name      string
	url       string
	token     string
	gzip      bool
	client    *http.Client
	retryable func(status int) bool
	message   func(contentType string, body []byte) string // the receiver's error message
	// answer, if set, is given a 2xx answer's body (up to 1 MiB).
	answer func(ctx context.Context, body []byte)
}

func newPoster(c Config, url string, retryable func(int) bool) (*poster, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if c.CAFile != "" || c.CertFile != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.CAFile != "" {
			pem, err := os.ReadFile(c.CAFile)
			if err != nil {
				return nil, fmt.Errorf("sink %s: ca_file: %w", c.Name, err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("sink %s: ca_file %s: no PEM certificate in it", c.Name, c.CAFile)
			}
		}
		if c.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("sink %s: cert_file and key_file: %w", c.Name, err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		tr.TLSClientConfig = tc
	}
	p := &poster{name: c.Name, url: url, gzip: c.Gzip == nil || *c.Gzip, client: &http.Client{Timeout: timeout, Transport: tr},
		retryable: retryable, message: plainMessage}
	// Hook for the fleet collector: token_file is read once at start.
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
			return fmt.Errorf("gzip: %w", err)
		}
		body = buf.Bytes()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return plugins.Permanent(err)
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
		return err // the network: retry
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 && p.answer != nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		p.answer(ctx, b)
		return nil
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	msg := p.message(resp.Header.Get("Content-Type"), answer)
	err = fmt.Errorf("%s: %s", resp.Status, msg)
	if resp.StatusCode == http.StatusRequestEntityTooLarge ||
		(resp.StatusCode == http.StatusBadRequest && strings.Contains(strings.ToLower(msg), "too large")) {
		return &plugins.TooLargeError{Err: err}
	}
	if !p.retryable(resp.StatusCode) {
		return plugins.Permanent(err)
	}
	if after, ok := retryAfter(resp.Header.Get("Retry-After")); ok {
		return &plugins.RetryAfterError{Err: err, After: after}
	}
	return err
}

func (p *poster) close() { p.client.CloseIdleConnections() }

// plainMessage is a receiver's answer as text: a JSON {"error"|"message"}
// member if there is one, else the body, trimmed and cut to 512 bytes.
func plainMessage(contentType string, body []byte) string {
	if strings.Contains(contentType, "json") {
		var m struct{ Error, Message string }
		if json.Unmarshal(body, &m) == nil && (m.Error != "" || m.Message != "") {
			return m.Error + m.Message
		}
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 512 {
		s = s[:512] + "…"
	}
	return strings.ToValidUTF8(s, "\uFFFD")
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
