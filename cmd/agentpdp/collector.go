package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/decisionlog/fleet"
)

// CollectorConfig is collector.yaml.
type CollectorConfig struct {
	Listen       string        `yaml:"listen"`
	Postgres     string        `yaml:"postgres"`
	WitnessKey   string        `yaml:"witness_key"`    // Ed25519, from agentpdp keygen
	WitnessName  string        `yaml:"witness_name"`   // the cosignature's key name; default agentpdp-collector
	GapDelay     time.Duration `yaml:"gap_delay"`      // a missing row older than this is a gap event; default 10m
	MaxBodyBytes int64         `yaml:"max_body_bytes"` // after gunzip; default 64 MiB
	TLS          struct {
		CertFile     string `yaml:"cert_file"`
		KeyFile      string `yaml:"key_file"`
		ClientCAFile string `yaml:"client_ca_file"` // mutual TLS: origins may authenticate by client certificate
	} `yaml:"tls"`
	Origins []struct {
		Origin    string `yaml:"origin"`
		Pubkey    string `yaml:"pubkey"`     // the host's checkpoint key (FILE.pub from agentpdp keygen)
		TokenFile string `yaml:"token_file"` // bearer token
		CertName  string `yaml:"cert_name"`  // a client certificate's CN or DNS name (mutual TLS)
	} `yaml:"origins"`
	Log struct {
		Level  string `yaml:"level"`
		Format string `yaml:"format"`
	} `yaml:"log"`
}

// loadCollectorConfig reads path over the defaults; unknown keys are errors.
func loadCollectorConfig(path string) (CollectorConfig, error) {
	c := CollectorConfig{Listen: "127.0.0.1:8443", WitnessName: "agentpdp-collector", GapDelay: 10 * time.Minute, MaxBodyBytes: 64 << 20}
	c.Log.Level, c.Log.Format = "info", "text"
	if err := decodeConfigFile(path, "collector config", &c); err != nil {
		return c, err
	}
	return c, configProblems("collector config", path, c.problems())
}

// Validate names every key at fault.
func (c CollectorConfig) Validate() error {
	return configProblems("collector config", "", c.problems())
}

// problems lists what is wrong with c's values, each naming its key.
func (c CollectorConfig) problems() []string {
	var errs []string
	if c.Listen == "" {
		errs = append(errs, "listen: must not be empty")
	}
	if c.Postgres == "" {
		errs = append(errs, "postgres: a DSN is required")
	}
	if c.WitnessKey == "" {
		errs = append(errs, "witness_key: required (agentpdp keygen --out collector.key)")
	}
	if c.GapDelay <= 0 || c.MaxBodyBytes <= 0 {
		errs = append(errs, "gap_delay and max_body_bytes: must be positive")
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs = append(errs, "tls: cert_file and key_file go together")
	}
	if c.TLS.ClientCAFile != "" && c.TLS.CertFile == "" {
		errs = append(errs, "tls.client_ca_file: needs tls.cert_file and tls.key_file")
	}
	if len(c.Origins) == 0 {
		errs = append(errs, "origins: at least one is required")
	}
	seen := map[string]bool{}
	for i, o := range c.Origins {
		switch {
		case o.Origin == "":
			errs = append(errs, fmt.Sprintf("origins[%d].origin: required", i))
		case seen[o.Origin]:
			errs = append(errs, fmt.Sprintf("origins[%d].origin: %q is listed twice", i, o.Origin))
		}
		seen[o.Origin] = true
		if o.Pubkey == "" {
			errs = append(errs, fmt.Sprintf("origins[%d].pubkey: required", i))
		}
		if o.TokenFile == "" && o.CertName == "" {
			errs = append(errs, fmt.Sprintf("origins[%d]: token_file or cert_name is required", i))
		}
		if o.CertName != "" && c.TLS.ClientCAFile == "" {
			errs = append(errs, fmt.Sprintf("origins[%d].cert_name: needs tls.client_ca_file", i))
		}
	}
	if !slices.Contains(logLevels, c.Log.Level) {
		errs = append(errs, fmt.Sprintf("log.level: %q, want one of %s", c.Log.Level, strings.Join(logLevels, ", ")))
	}
	if !slices.Contains(logFormats, c.Log.Format) {
		errs = append(errs, fmt.Sprintf("log.format: %q, want one of %s", c.Log.Format, strings.Join(logFormats, ", ")))
	}
	return errs
}

// collectorCmd is agentpdp collector.
type collectorCmd struct {
	streams
	config string
}

func newCollectorCmd() *cobra.Command {
	c := &collectorCmd{}
	cmd := &cobra.Command{
		Use:   "collector --config FILE",
		Short: "Collect, verify and witness the decision logs of a fleet, into PostgreSQL",
		Args:  noArgs,
		RunE:  runE(c, nil),
	}
	cmd.Flags().StringVar(&c.config, "config", "", "collector.yaml `file`")
	return cmd
}

// Run serves until ctx ends.
func (c *collectorCmd) Run(ctx context.Context) error {
	if c.config == "" {
		return usagef("collector: --config is required")
	}
	if _, err := readFlagFile("collector", "config", c.config); err != nil {
		return err
	}
	cfg, err := loadCollectorConfig(c.config)
	if err != nil {
		return err
	}
	logger := newLogger(c.stderr, cfg.Log.Level, cfg.Log.Format)
	keyPEM, err := os.ReadFile(cfg.WitnessKey)
	if err != nil {
		return fmt.Errorf("witness_key: %w", err)
	}
	key, err := decisionlog.ParsePrivateKey(keyPEM)
	if err != nil {
		return fmt.Errorf("witness_key %s: %w", cfg.WitnessKey, err)
	}
	w, err := fleet.NewWitness(cfg.WitnessName, key)
	if err != nil {
		return fmt.Errorf("witness_name: %w", err)
	}
	opts := fleet.Options{Postgres: cfg.Postgres, Witness: w, GapDelay: cfg.GapDelay, MaxBodyBytes: cfg.MaxBodyBytes, Logger: logger}
	for i, o := range cfg.Origins {
		pubPEM, err := os.ReadFile(o.Pubkey)
		if err != nil {
			return fmt.Errorf("origins[%d].pubkey: %w", i, err)
		}
		pub, err := decisionlog.ParsePublicKey(pubPEM)
		if err != nil {
			return fmt.Errorf("origins[%d].pubkey %s: %w", i, o.Pubkey, err)
		}
		fo := fleet.Origin{Name: o.Origin, PublicKey: pub, CertName: o.CertName}
		if o.TokenFile != "" {
			tok, err := os.ReadFile(o.TokenFile)
			if err != nil {
				return fmt.Errorf("origins[%d].token_file: %w", i, err)
			}
			if fo.Token = strings.TrimSpace(string(tok)); fo.Token == "" {
				return fmt.Errorf("origins[%d].token_file %s: empty", i, o.TokenFile)
			}
		}
		opts.Origins = append(opts.Origins, fo)
	}
	col, err := fleet.Open(ctx, opts)
	if err != nil {
		return err
	}
	defer col.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(col.Collectors()...)
	mux := http.NewServeMux()
	mux.Handle("/", col.Handler())
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("collector: %w", err)
	}
	if cfg.TLS.CertFile != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		cert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			ln.Close()
			return fmt.Errorf("tls: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
		if cfg.TLS.ClientCAFile != "" {
			pem, err := os.ReadFile(cfg.TLS.ClientCAFile)
			if err != nil {
				ln.Close()
				return fmt.Errorf("tls.client_ca_file: %w", err)
			}
			tc.ClientCAs = x509.NewCertPool()
			if !tc.ClientCAs.AppendCertsFromPEM(pem) {
				ln.Close()
				return fmt.Errorf("tls.client_ca_file %s: no certificate in it", cfg.TLS.ClientCAFile)
			}
			// Verified when given; a token authenticates an origin without one.
			tc.ClientAuth = tls.VerifyClientCertIfGiven
		}
		ln = tls.NewListener(ln, tc)
	}
	logger.Info("collector listening", "addr", ln.Addr().String(), "tls", cfg.TLS.CertFile != "", "origins", len(opts.Origins), "witness", w.Name(), "witness_key_id", decisionlog.KeyID(w.PublicKey()))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("collector: %w", err)
	case <-ctx.Done():
	}
	// A fresh context: the one we had is done, and in-flight batches
	// deserve their commit.
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
