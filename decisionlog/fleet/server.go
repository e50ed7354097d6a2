package fleet

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
)

// Handler serves the collector's HTTP API:
//
//	POST /v1/ingest            the http sink's JSONL (optionally gzip); answers an IngestResult
//	POST /v1/logs              OTLP/HTTP logs from the otlp sink (protobuf or JSON)
//	GET  /v1/witness/{origin}  the newest cosigned checkpoint of origin, a C2SP note
//
// Each POST authenticates its origin by bearer token or by the client
// certificate of a mutual TLS connection; a wrong or missing one is 401,
// and rows of another origin than the one authenticated are 403.
func (c *Collector) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/ingest", c.serveIngest)
	mux.HandleFunc("POST /v1/logs", c.serveOTLP)
	mux.HandleFunc("GET /v1/witness/{origin}", c.serveWitness)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := c.store.pool.Ping(r.Context()); err != nil {
			http.Error(w, "postgres: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	return mux
}

// authenticate names the origin the request speaks for, or "".
func (c *Collector) authenticate(r *http.Request) string {
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && tok != "" {
		// Compare digests in constant time against every origin's, so the
		// time taken says nothing about how close a guess was.
		got := sha256.Sum256([]byte(tok))
		found := ""
		for name, o := range c.origins {
			if o.Token == "" {
				continue
			}
			want := sha256.Sum256([]byte(o.Token))
			if subtle.ConstantTimeCompare(got[:], want[:]) == 1 {
				found = name
			}
		}
		return found
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		cert := r.TLS.VerifiedChains[0][0]
		for name, o := range c.origins {
			if o.CertName == "" {
				continue
			}
			if cert.Subject.CommonName == o.CertName {
				return name
			}
			for _, dns := range cert.DNSNames {
				if dns == o.CertName {
					return name
				}
			}
		}
	}
	return ""
}

// body reads the request body, gunzipped if it says so, up to the limit.
func (c *Collector) body(r *http.Request) ([]byte, error) {
	var rd io.Reader = http.MaxBytesReader(nil, r.Body, c.opts.MaxBodyBytes)
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(rd)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		rd = zr
	default:
		return nil, fmt.Errorf("content-encoding %q: want gzip or none", enc)
	}
	b, err := io.ReadAll(io.LimitReader(rd, c.opts.MaxBodyBytes+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > c.opts.MaxBodyBytes {
		return nil, fmt.Errorf("body larger than %d bytes", c.opts.MaxBodyBytes)
	}
	return b, nil
}

func (c *Collector) serveIngest(w http.ResponseWriter, r *http.Request) {
	origin := c.authenticate(r)
	if origin == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="agentpdp collector"`)
		http.Error(w, "unauthorized: a bearer token or client certificate of a configured origin is required", http.StatusUnauthorized)
		return
	}
	b, err := c.body(r)
	if err != nil {
		status := http.StatusBadRequest
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) || strings.Contains(err.Error(), "larger than") {
			status = http.StatusRequestEntityTooLarge
		}
		http.Error(w, "ingest: "+err.Error(), status)
		return
	}
	var rows []*Row
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), int(c.opts.MaxBodyBytes))
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		row, err := ParseRow(sc.Bytes())
		if err != nil {
			http.Error(w, fmt.Sprintf("ingest: line %d: %v", n, err), http.StatusBadRequest)
			return
		}
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		http.Error(w, "ingest: "+err.Error(), http.StatusBadRequest)
		return
	}
	c.ingestAndAnswer(w, r, origin, rows, func(res *IngestResult, status int) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(res)
	})
}

// ingestAndAnswer checks that every row is of the authenticated origin,
// ingests them, and answers 200, or 409 when the batch raised a fork,
// rollback or bad signature, or the origin's verification has halted: a
// sink that gets 409 stops, loudly, on the host.
func (c *Collector) ingestAndAnswer(w http.ResponseWriter, r *http.Request, origin string, rows []*Row, answer func(*IngestResult, int)) {
	for _, row := range rows {
		if row.Origin != origin {
			http.Error(w, fmt.Sprintf("ingest: seq %d is of origin %q, but the credentials are %q's", row.Seq, row.Origin, origin), http.StatusForbidden)
			return
		}
	}
	res, err := c.Ingest(r.Context(), origin, rows)
	if err != nil {
		c.log.Warn("ingest failed", "origin", origin, "rows", len(rows), "err", err)
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	status := http.StatusOK
	if len(res.Events) > 0 || res.Halted != "" {
		status = http.StatusConflict
	}
	answer(res, status)
}

// serveOTLP takes the otlp sink's logs: each record's body is a whole row,
// and the resource's agentpdp.origin names the log.
func (c *Collector) serveOTLP(w http.ResponseWriter, r *http.Request) {
	origin := c.authenticate(r)
	if origin == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="agentpdp collector"`)
		http.Error(w, "unauthorized: a bearer token or client certificate of a configured origin is required", http.StatusUnauthorized)
		return
	}
	b, err := c.body(r)
	if err != nil {
		http.Error(w, "logs: "+err.Error(), http.StatusBadRequest)
		return
	}
	req := plogotlp.NewExportRequest()
	ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	switch ct {
	case "application/x-protobuf":
		err = req.UnmarshalProto(b)
	case "application/json":
		err = req.UnmarshalJSON(b)
	default:
		http.Error(w, fmt.Sprintf("logs: content-type %q: want application/x-protobuf or application/json", ct), http.StatusUnsupportedMediaType)
		return
	}
	if err != nil {
		http.Error(w, "logs: "+err.Error(), http.StatusBadRequest)
		return
	}
	rows, err := otlpRows(req.Logs())
	if err != nil {
		http.Error(w, "logs: "+err.Error(), http.StatusBadRequest)
		return
	}
	c.ingestAndAnswer(w, r, origin, rows, func(res *IngestResult, status int) {
		if status != http.StatusOK {
			// OTLP carries no room for the answer: say it in the message.
			msg, _ := json.Marshal(res)
			http.Error(w, string(msg), status)
			return
		}
		out, _ := plogotlp.NewExportResponse().MarshalProto()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	})
}

// otlpRows reads the rows out of OTLP logs: every record's body is a row,
// as the otlp sink writes it.
func otlpRows(logs plog.Logs) ([]*Row, error) {
	var rows []*Row
	rls := logs.ResourceLogs()
	for i := 0; i < rls.Len(); i++ {
		sls := rls.At(i).ScopeLogs()
		for j := 0; j < sls.Len(); j++ {
			recs := sls.At(j).LogRecords()
			for k := 0; k < recs.Len(); k++ {
				body := recs.At(k).Body().Str()
				if body == "" {
					return nil, fmt.Errorf("record %d: the body is not a row (want the row's JSON as a string, as the otlp sink sends)", k)
				}
				row, err := ParseRow([]byte(body))
				if err != nil {
					return nil, fmt.Errorf("record %d: %w", k, err)
				}
				rows = append(rows, row)
			}
		}
	}
	return rows, nil
}

func (c *Collector) serveWitness(w http.ResponseWriter, r *http.Request) {
	origin := r.PathValue("origin")
	wit, err := c.Witnessed(r.Context(), origin)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if wit == nil {
		http.Error(w, fmt.Sprintf("no checkpoint of origin %q has been cosigned", origin), http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte(wit.Checkpoint))
}
