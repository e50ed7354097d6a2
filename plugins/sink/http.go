package sink

import (
	"bytes"
	"context"
	"fmt"
	"net/http"

	"github.com/agentpdp/agentpdp/plugins"
)

// HTTPSink POSTs each batch as a JSONL body (gzip by default). 2xx
// acknowledges; 429 and 5xx are retried, honouring Retry-After; any other
// status is permanent: retrying the same batch cannot change the answer.
type HTTPSink struct{ p *poster }

// NewHTTPSink checks the configuration and reads the token file.
func NewHTTPSink(c Config) (*HTTPSink, error) {
	if err := Check(c); err != nil {
		return nil, err
	}
	p, err := newPoster(c, c.URL, func(status int) bool { return status == http.StatusTooManyRequests || status/100 == 5 })
	if err != nil {
		return nil, err
	}
	return &HTTPSink{p: p}, nil
}

// Name is the sink's name.
func (s *HTTPSink) Name() string { return s.p.name }

// Ship POSTs the batch.
func (s *HTTPSink) Ship(ctx context.Context, b *plugins.Batch) error {
	var body bytes.Buffer
	for _, r := range b.Rows {
		body.Write(r)
		body.WriteByte('\n')
	}
	return s.p.post(ctx, "application/x-ndjson", body.Bytes(), http.Header{
		"X-Agentpdp-Origin":    {b.Origin},
		"X-Agentpdp-Seq-Range": {fmt.Sprintf("%d-%d", b.FirstSeq, b.LastSeq)},
	})
}

// Close releases idle connections.
func (s *HTTPSink) Close() error {
	s.p.close()
	return nil
}
