//go:build otel

package sink_test

// The OTLP sink against a real OpenTelemetry Collector (make test-otel,
// which builds one with .ci/setup-otel.sh and sets AGENTPDP_OTELCOL). The
// Collector receives with its OTLP receiver (mutual TLS, a body limit) and
// forwards with its OTLP/HTTP exporter to this test, which reads exactly
// what came through.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/plugins/sink"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestOTLP_RealCollector(t *testing.T) {
	bin := os.Getenv("AGENTPDP_OTELCOL")
	if bin == "" {
		t.Fatal("AGENTPDP_OTELCOL is not set: run make test-otel")
	}
	pki := newPKI(t)
	downstream := &otlpReceiver{}
	down := httptest.NewServer(downstream)
	defer down.Close()

	port := freePort(t)
	const bodyLimit = 16 << 10
	cfg := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%d
        max_request_body_size: %d
        tls:
          cert_file: %s
          key_file: %s
          client_ca_file: %s
exporters:
  otlphttp:
    endpoint: %s
    compression: none
    retry_on_failure: {enabled: false}
    sending_queue: {enabled: false}
service:
  telemetry:
    metrics: {level: none}
    logs: {level: warn}
  pipelines:
    logs: {receivers: [otlp], exporters: [otlphttp]}
`, port, bodyLimit, pki.ServerCert, pki.ServerKey, pki.CA, down.URL)
	cfgPath := filepath.Join(t.TempDir(), "otelcol.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("collector output:\n%s", stderr.String())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-done:
			t.Fatalf("the collector exited: %v", cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the collector did not listen: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A log: 30 decisions, an outcome, and one decision larger than the
	// Collector's body limit even compressed (random-looking bytes).
	path := filepath.Join(t.TempDir(), "d.db")
	l, err := decisionlog.Open(t.Context(), path, decisionlog.Options{Durability: decisionlog.DurabilityNormal})
	if err != nil {
		t.Fatal(err)
	}
	for range 30 {
		l.Append(t.Context(), &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: json.RawMessage(decisionBody)})
	}
	l.Append(t.Context(), &decisionlog.Entry{Kind: "outcome", Time: time.Now(), Body: json.RawMessage(outcomeBody)})
	var noise strings.Builder
	for i := range 6000 {
		fmt.Fprintf(&noise, "%08x", uint32(i)*2654435761)
	}
	big := strings.Replace(decisionBody, `"args":{"query":"select 1"}`, fmt.Sprintf(`"args":{"blob":%q}`, noise.String()), 1)
	l.Append(t.Context(), &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: json.RawMessage(big)})
	for range 5 {
		l.Append(t.Context(), &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: json.RawMessage(decisionBody)})
	}
	l.Close(t.Context())
	r, err := decisionlog.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	last, err := r.LastSeq(t.Context())
	r.Close()
	if err != nil {
		t.Fatal(err)
	}

	sk, err := sink.New(sink.Config{Name: "otel", Type: "otlp", Endpoint: fmt.Sprintf("https://127.0.0.1:%d", port),
		CAFile: pki.CA, CertFile: pki.ClientCert, KeyFile: pki.ClientKey, Timeout: 10 * time.Second, BatchSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer sk.Close()
	s := pdptest.Shipper(t, path, sk)
	s.MinBackoff = 50 * time.Millisecond
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	go s.Run(ctx)
	for s.Status(context.Background())[0].Cursor != last {
		if ctx.Err() != nil {
			t.Fatalf("not everything shipped through the collector: %+v", s.Status(context.Background())[0])
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	st := s.Status(context.Background())[0]
	if st.TooLarge != 1 || st.Stopped {
		t.Errorf("status: %+v", st)
	}
	if !strings.Contains(st.LastError, "too large") && st.Failures == 0 {
		t.Errorf("the Collector's refusal was not seen: %+v", st)
	}

	downstream.mu.Lock()
	defer downstream.mu.Unlock()
	if int64(len(downstream.records)) != last {
		t.Fatalf("%d records came through the collector, want %d", len(downstream.records), last)
	}
	seqs := map[int64]bool{}
	stubs := 0
	for _, r := range downstream.records {
		v, _ := r.Attributes().Get("agentpdp.seq")
		seqs[v.Int()] = true
		if strings.Contains(r.Body().Str(), `"too_large":true`) {
			stubs++
		}
	}
	if int64(len(seqs)) != last || stubs != 1 {
		t.Errorf("%d distinct seqs of %d, %d stubs", len(seqs), last, stubs)
	}
	wantAttributes(t, downstream.records[0], downstream.records[30], downstream.resources[0])
}
