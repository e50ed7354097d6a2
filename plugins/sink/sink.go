// Package sink holds agentpdp's built-in sinks (a rotated JSONL file, HTTP
// POST of JSONL, OTLP/HTTP logs) and makes any sink, plugin sinks included,
// from its configuration.
package sink

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/agentpdp/agentpdp/plugins"
	"github.com/agentpdp/agentpdp/plugins/host"
)

// Config describes one sink, as the daemon's configuration lists it.
type Config struct {
	Name      string `yaml:"name"`
	Type      string `yaml:"type"`       // file | http
	Path      string `yaml:"path"`       // file: where to append JSONL
	MaxBytes  int64  `yaml:"max_bytes"`  // file: rotate past this size; 0 never
	URL       string `yaml:"url"`        // http: where to POST
	TokenFile string `yaml:"token_file"` // http: bearer token, read at start
	Witness   bool   `yaml:"witness"`    // http: keep the collector's cosignatures in the log (see HTTPSink.OnWitness)
	Gzip      *bool  `yaml:"gzip"`       // http: compress bodies; default true
	BatchSize int    `yaml:"batch_size"` // rows per batch; default 500
	// BatchMaxBytes bounds a batch's rows in bytes, before compression;
	// default 4 MiB. A receiver's "too large" splits batches further.
	BatchMaxBytes int64 `yaml:"batch_max_bytes"`
	// TLS for the http and otlp sinks: CAFile verifies the receiver (instead
	// of the system roots); CertFile and KeyFile are the client certificate
	// for mutual TLS.
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// Timeout bounds one request to the receiver, answer included;
	// default 30s.
	Timeout  time.Duration `yaml:"timeout"`
	Endpoint string        `yaml:"endpoint"` // otlp: the collector's OTLP/HTTP address, http://host:4318
	Command  string        `yaml:"command"`  // plugin: the sink plugin binary
	Args     []string      `yaml:"args"`     // plugin: its arguments
	Checksum string        `yaml:"checksum"` // plugin: hex SHA-256 of the binary, checked before it runs
	// Start is where a sink begins the first time it is seen: "oldest"
	// (the default: every row still in the log) or "now" (the rows after
	// the log's last seq at that moment). It is recorded with the sink's
	// cursor and shown in its status; a sink already seen keeps its start.
	Start string `yaml:"start"`
}

// Check reports what is wrong with a sink's configuration, without opening
// anything, so that a daemon refuses a bad configuration before it starts.
func Check(c Config) error {
	if c.Name == "" {
		return errors.New("sink: name is required")
	}
	switch c.Type {
	case "file":
		if c.Path == "" {
			return fmt.Errorf("sink %s: path is required", c.Name)
		}
	case "http":
		if !strings.HasPrefix(c.URL, "http://") && !strings.HasPrefix(c.URL, "https://") {
			return fmt.Errorf("sink %s: url %q: want http:// or https://", c.Name, c.URL)
		}
	case "otlp":
		if !strings.HasPrefix(c.Endpoint, "http://") && !strings.HasPrefix(c.Endpoint, "https://") {
			return fmt.Errorf("sink %s: endpoint %q: want the collector's OTLP/HTTP address, http://host:4318", c.Name, c.Endpoint)
		}
	case "plugin":
		if c.Command == "" {
			return fmt.Errorf("sink %s: command is required for a plugin sink", c.Name)
		}
	default:
		return fmt.Errorf("sink %s: type %q: want file, http, otlp or plugin", c.Name, c.Type)
	}
	switch c.Start {
	case "", "oldest": // decisionlog.StartOldest; the shipper records it
	case "now":
		if c.Witness {
			return fmt.Errorf("sink %s: start: now and witness: true do not go together: the witness verifies the log from seq 1, so it needs every row (start: oldest)", c.Name)
		}
	default:
		return fmt.Errorf("sink %s: start %q: want oldest (every row in the log, the default) or now (the rows written from the sink's first start)", c.Name, c.Start)
	}
	if c.Witness && c.Type != "http" {
		return fmt.Errorf("sink %s: witness: only an http sink to an agentpdp collector gets cosignatures back", c.Name)
	}
	if c.BatchSize < 0 || c.MaxBytes < 0 || c.BatchMaxBytes < 0 || c.Timeout < 0 {
		return fmt.Errorf("sink %s: batch_size, batch_max_bytes, max_bytes and timeout must not be negative", c.Name)
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return fmt.Errorf("sink %s: cert_file and key_file go together (mutual TLS)", c.Name)
	}
	if (c.CAFile != "" || c.CertFile != "") && c.Type != "http" && c.Type != "otlp" {
		return fmt.Errorf("sink %s: ca_file, cert_file and key_file are for http and otlp sinks", c.Name)
	}
	return nil
}

// New makes a sink from its configuration; a plugin sink is launched.
func New(c Config) (plugins.Sink, error) {
	return NewWithLogger(c, nil)
}

// NewWithLogger is New with a logger for plugin processes.
func NewWithLogger(c Config, logger *slog.Logger) (plugins.Sink, error) {
	return NewWith(c, logger, nil)
}

// NewWith is New with a logger for plugin processes and a counter of their
// relaunches (either may be nil).
func NewWith(c Config, logger *slog.Logger, restarts *atomic.Int64) (plugins.Sink, error) {
	if err := Check(c); err != nil {
		return nil, err
	}
	switch c.Type {
	case "file":
		return NewFileSink(c.Name, c.Path, c.MaxBytes)
	case "otlp":
		return NewOTLPSink(c)
	case "plugin":
		return host.NewPluginSink(host.PluginConfig{Name: c.Name, Command: c.Command, Args: c.Args, Checksum: c.Checksum, Restarts: restarts}, logger)
	}
	return NewHTTPSink(c)
}
