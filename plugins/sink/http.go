package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/agentpdp/agentpdp/plugins"
)

// HTTPSink POSTs each batch as a JSONL body (gzip by default). 2xx
// acknowledges; 429 and 5xx are retried, honouring Retry-After; any other
// status is permanent: retrying the same batch cannot change the answer.
type HTTPSink struct {
	p       *poster
	witness bool
}

// NewHTTPSink checks the configuration and reads the token file.
func NewHTTPSink(c Config) (*HTTPSink, error) {
	if err := Check(c); err != nil {
		return nil, err
	}
	p, err := newPoster(c, c.URL, func(status int) bool { return status == http.StatusTooManyRequests || status/100 == 5 })
	if err != nil {
		return nil, err
	}
	return &HTTPSink{p: p, witness: c.Witness}, nil
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

// OnWitness, for a sink configured with witness: true, is called with the
// newest cosigned checkpoint (a C2SP note) in each of the collector's
// answers and its tree size, before the batch counts as shipped; keeping
// it is the callback's job (serve writes a cosignature row). Call it
// before shipping starts.
func (s *HTTPSink) OnWitness(fn func(ctx context.Context, treeSize int64, checkpoint string)) {
	s.p.answer = func(ctx context.Context, body []byte) {
		var a struct {
			Witnessed *struct {
				TreeSize   int64  `json:"tree_size"`
				Checkpoint string `json:"checkpoint"`
			} `json:"witnessed"`
		}
		if json.Unmarshal(body, &a) == nil && a.Witnessed != nil && a.Witnessed.TreeSize > 0 && a.Witnessed.Checkpoint != "" {
			fn(ctx, a.Witnessed.TreeSize, a.Witnessed.Checkpoint)
		}
	}
}

// Witness reports whether the sink was configured with witness: true.
func (s *HTTPSink) Witness() bool { return s.witness }

// Close releases idle connections.
func (s *HTTPSink) Close() error {
	s.p.close()
	return nil
}
