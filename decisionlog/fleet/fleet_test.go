package fleet_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/decisionlog/fleet"
	"github.com/agentpdp/agentpdp/internal/pgtest"
	"github.com/agentpdp/agentpdp/plugins"
	"github.com/agentpdp/agentpdp/plugins/shipper"
	"github.com/agentpdp/agentpdp/plugins/sink"
)

func newKey(t testing.TB) (ed25519.PrivateKey, ed25519.PublicKey) {
	t.Helper()
	privPEM, _, err := decisionlog.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	priv, err := decisionlog.ParsePrivateKey(privPEM)
	if err != nil {
		t.Fatal(err)
	}
	return priv, priv.Public().(ed25519.PublicKey)
}

// hostLog is a host's signed decision log with a checkpoint every 10 rows.
type hostLog struct {
	path   string
	origin string
	priv   ed25519.PrivateKey
	pub    ed25519.PublicKey
}

func newHostLog(t testing.TB, n int) *hostLog {
	t.Helper()
	priv, pub := newKey(t)
	h := &hostLog{path: filepath.Join(t.TempDir(), "d.db"), priv: priv, pub: pub}
	h.append(t, n)
	return h
}

// append writes n decisions and closes the log, which signs the tail.
func (h *hostLog) append(t testing.TB, n int) {
	t.Helper()
	l, err := decisionlog.Open(context.Background(), h.path, decisionlog.Options{SigningKey: h.priv, CheckpointEvery: 10, Durability: decisionlog.DurabilityNormal})
	if err != nil {
		t.Fatal(err)
	}
	h.origin = l.Origin()
	for i := range n {
		body := fmt.Sprintf(`{"decision_id":"%s-%d","decision":"allow","principal":"Agent::\"a\"","action":"Action::\"call\"","resource":"Tool::\"t%d\""}`, h.origin[:8], i, i%7)
		if err := l.Append(context.Background(), &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: []byte(body)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// rows are the host's rows as its http sink ships them.
func (h *hostLog) rows(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	if err := ship(t, h, &captureSink{rows: &out}); err != nil {
		t.Fatal(err)
	}
	return out
}

type captureSink struct{ rows *[][]byte }

func (s *captureSink) Name() string { return "capture" }
func (s *captureSink) Ship(_ context.Context, b *plugins.Batch) error {
	*s.rows = append(*s.rows, b.Rows...)
	return nil
}
func (s *captureSink) Close() error { return nil }

func ship(t testing.TB, h *hostLog, to plugins.Sink) error {
	t.Helper()
	r, err := decisionlog.OpenReader(h.path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cur, err := decisionlog.OpenCursors(h.path)
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close()
	s := &shipper.Shipper{Reader: r, Cursors: cur, Origin: h.origin, Targets: []shipper.Target{{Sink: to, BatchSize: 25}}}
	return s.Once(context.Background())
}

type testCollector struct {
	*fleet.Collector
	srv     *httptest.Server
	witness ed25519.PublicKey
	token   string
}

func startCollector(t testing.TB, dsn string, gap time.Duration, hosts ...*hostLog) *testCollector {
	t.Helper()
	wpriv, wpub := newKey(t)
	w, err := fleet.NewWitness("collector.test", wpriv)
	if err != nil {
		t.Fatal(err)
	}
	tc := &testCollector{witness: wpub, token: "secret-token"}
	var origins []fleet.Origin
	for i, h := range hosts {
		origins = append(origins, fleet.Origin{Name: h.origin, PublicKey: h.pub, Token: fmt.Sprintf("%s-%d", tc.token, i)})
	}
	c, err := fleet.Open(context.Background(), fleet.Options{Postgres: dsn, Witness: w, Origins: origins, GapDelay: gap})
	if err != nil {
		t.Fatal(err)
	}
	tc.Collector = c
	tc.srv = httptest.NewServer(c.Handler())
	t.Cleanup(func() {
		tc.srv.Close()
		c.Close()
	})
	return tc
}

func (tc *testCollector) post(t testing.TB, token string, rows [][]byte) (int, *fleet.IngestResult, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", tc.srv.URL+"/v1/ingest", bytes.NewReader(append(bytes.Join(rows, []byte("\n")), '\n')))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var res fleet.IngestResult
	json.Unmarshal(b, &res)
	return resp.StatusCode, &res, string(b)
}

func startPG(t *testing.T) string {
	t.Helper()
	if !pgtest.Enabled() {
		t.Skip("PostgreSQL tests run under make test-pg (AGENTPDP_PG=1)")
	}
	return pgtest.Start(t, "fsync=off").DSN
}

func TestCollector_VerifiesAndWitnessesOutOfOrder(t *testing.T) {
	dsn := startPG(t)
	h := newHostLog(t, 95)
	tc := startCollector(t, dsn, time.Hour, h)
	rows := h.rows(t)
	token := tc.token + "-0"

	for _, tok := range []string{"", "wrong"} {
		if code, _, body := tc.post(t, tok, rows[:5]); code != http.StatusUnauthorized {
			t.Fatalf("token %q: got %d %s, want 401", tok, code, body)
		}
	}
	// The second half first: stored, not verified past the gap.
	half := len(rows) / 2
	code, res, body := tc.post(t, token, rows[half:])
	if code != 200 || res.Stored != len(rows)-half || res.VerifiedSeq != 0 {
		t.Fatalf("second half: %d %s", code, body)
	}
	// Then the first half, with a duplicate of one row of the second.
	code, res, body = tc.post(t, token, append(rows[:half:half], rows[half]))
	if code != 200 || res.Stored != half || res.Duplicates != 1 {
		t.Fatalf("first half: %d %s", code, body)
	}
	if res.VerifiedSeq != int64(len(rows)) {
		t.Fatalf("verified through %d, want %d", res.VerifiedSeq, len(rows))
	}
	if res.Witnessed == nil {
		t.Fatal("no cosigned checkpoint in the answer")
	}
	c, err := fleet.VerifyCosigned([]byte(res.Witnessed.Checkpoint), tc.witness)
	if err != nil {
		t.Fatal(err)
	}
	// The last row is the checkpoint Close wrote: it covers every row before it.
	if c.Origin != h.origin || c.Size != uint64(len(rows)-1) {
		t.Fatalf("cosigned %s size %d, want %s size %d", c.Origin, c.Size, h.origin, len(rows)-1)
	}
	if want := hostRoot(t, h, c.Size); !bytes.Equal(c.Hash, want) {
		t.Fatal("cosigned root is not the root of the host's rows")
	}
	// Another key does not verify it.
	_, other := newKey(t)
	if _, err := fleet.VerifyCosigned([]byte(res.Witnessed.Checkpoint), other); err == nil {
		t.Fatal("a cosignature verified with another key")
	}
	// Everything again: all duplicates, nothing changes.
	code, res, body = tc.post(t, token, rows)
	if code != 200 || res.Duplicates != len(rows) || res.Stored != 0 {
		t.Fatalf("resend: %d %s", code, body)
	}
	resp, err := http.Get(tc.srv.URL + "/v1/witness/" + h.origin)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != res.Witnessed.Checkpoint {
		t.Fatalf("GET /v1/witness: %d %q", resp.StatusCode, b)
	}
	rep, err := fleet.VerifyAll(context.Background(), tc.Store(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Origins) != 1 || !rep.Origins[0].OK || rep.Origins[0].Rows != int64(len(rows)) || rep.Origins[0].Cosignatures == 0 {
		t.Fatalf("fleet verify: %+v", rep.Origins)
	}
}

// hostRoot is the RFC 6962 root of the host's first size rows.
func hostRoot(t testing.TB, h *hostLog, size uint64) []byte {
	t.Helper()
	r, err := decisionlog.OpenReader(h.path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tree := fleet.NewTree()
	r.Scan(context.Background(), 1, func(e *decisionlog.Entry) error {
		if tree.Size() < size {
			tree.Append(e.Hash)
		}
		return nil
	})
	return tree.Root()
}

func TestCollector_RewrittenRowIsRollback(t *testing.T) {
	dsn := startPG(t)
	h := newHostLog(t, 30)
	tc := startCollector(t, dsn, time.Hour, h)
	rows := h.rows(t)
	token := tc.token + "-0"
	if code, _, body := tc.post(t, token, rows); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	// Row 5 rewritten, its hash recomputed: a different row for seq 5.
	forged := bytes.Replace(rows[4], []byte(`"allow"`), []byte(`"deny"`), 1)
	row, err := fleet.ParseRow(forged)
	if err != nil {
		t.Fatal(err)
	}
	forged = bytes.Replace(forged, []byte(fmt.Sprintf("%x", row.Hash)), []byte(fmt.Sprintf("%x", decisionlog.ChainHash(mustRow(t, rows[3]).Hash, row.Entry()))), 1)
	code, res, body := tc.post(t, token, [][]byte{forged})
	if code != http.StatusConflict || len(res.Events) != 1 || res.Events[0].Kind != fleet.EventRollback || res.Events[0].Seq != 5 {
		t.Fatalf("got %d %s, want 409 with a rollback at seq 5", code, body)
	}
	evs, err := fleet.Events(context.Background(), tc.Store(), fleet.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Kind != fleet.EventRollback {
		t.Fatalf("stored events: %+v", evs)
	}
}

func mustRow(t testing.TB, b []byte) *fleet.Row {
	t.Helper()
	r, err := fleet.ParseRow(b)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCollector_BadSignatureAndGap(t *testing.T) {
	dsn := startPG(t)
	h := newHostLog(t, 25)
	other := newHostLog(t, 5)
	// The collector knows h's origin with the other host's key: every
	// checkpoint's signature fails.
	h2 := *h
	h2.pub = other.pub
	tc := startCollector(t, dsn, 300*time.Millisecond, &h2)
	rows := h.rows(t)
	token := tc.token + "-0"
	code, res, body := tc.post(t, token, rows[:15])
	if code != http.StatusConflict || len(res.Events) != 1 || res.Events[0].Kind != fleet.EventBadSignature || res.Events[0].Seq != 11 {
		t.Fatalf("got %d %s, want a bad signature at seq 11", code, body)
	}
	if res.VerifiedSeq != 10 || res.Halted == "" {
		t.Fatalf("verified %d halted %q", res.VerifiedSeq, res.Halted)
	}

	// A second origin whose seq 3 never comes.
	g := newHostLog(t, 8)
	tc2 := startCollector(t, dsn, 300*time.Millisecond, g)
	grows := g.rows(t)
	if code, res, body := tc2.post(t, tc2.token+"-0", append(grows[:2:2], grows[3:]...)); code != 200 || res.VerifiedSeq != 2 {
		t.Fatalf("%d %s", code, body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs, err := fleet.Events(context.Background(), tc2.Store(), fleet.EventFilter{Origin: g.origin})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 1 && evs[0].Kind == fleet.EventGap && evs[0].Seq == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no gap event: %+v", evs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Two collectors on one database, fed the same batches at once, store
// every row once and cosign one checkpoint per tree size.
func TestCollector_TwoCollectorsOneHead(t *testing.T) {
	dsn := startPG(t)
	h := newHostLog(t, 200)
	a := startCollector(t, dsn, time.Hour, h)
	b := startCollector(t, dsn, time.Hour, h)
	rows := h.rows(t)
	var wg sync.WaitGroup
	for _, tc := range []*testCollector{a, b} {
		wg.Go(func() {
			for i := 0; i < len(rows); i += 20 {
				if code, _, body := tc.post(t, tc.token+"-0", rows[i:min(i+20, len(rows))]); code != 200 {
					t.Errorf("%d %s", code, body)
				}
			}
		})
	}
	wg.Wait()
	var n, distinct int64
	if err := a.Store().Pool().QueryRow(context.Background(), `SELECT count(*), count(DISTINCT seq) FROM fleet_rows WHERE origin = $1`, h.origin).Scan(&n, &distinct); err != nil {
		t.Fatal(err)
	}
	if n != int64(len(rows)) || distinct != n {
		t.Fatalf("%d rows stored (%d distinct), want %d", n, distinct, len(rows))
	}
	rep, err := fleet.VerifyAll(context.Background(), a.Store(), nil)
	if err != nil {
		t.Fatal(err)
	}
	checkpoints := int64(0)
	for _, r := range rows {
		if mustRow(t, r).Kind == "checkpoint" {
			checkpoints++
		}
	}
	if !rep.Origins[0].OK || rep.Origins[0].Cosignatures != checkpoints {
		t.Fatalf("fleet verify: %+v", rep.Origins[0])
	}
}

// The OTLP path takes what the otlp sink sends.
func TestCollector_OTLP(t *testing.T) {
	dsn := startPG(t)
	h := newHostLog(t, 12)
	tc := startCollector(t, dsn, time.Hour, h)
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte(tc.token+"-0\n"), 0o600)
	otlp, err := sink.NewOTLPSink(sink.Config{Name: "otel", Type: "otlp", Endpoint: tc.srv.URL, TokenFile: tokenFile})
	if err != nil {
		t.Fatal(err)
	}
	if err := ship(t, h, otlp); err != nil {
		t.Fatal(err)
	}
	var verified int64
	if err := tc.Store().Pool().QueryRow(context.Background(), `SELECT verified_seq FROM fleet_origins WHERE origin = $1`, h.origin).Scan(&verified); err != nil {
		t.Fatal(err)
	}
	if want := int64(len(h.rows(t))); verified != want {
		t.Fatalf("verified through %d, want %d", verified, want)
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// tlsPair is a CA and a client certificate it signed for name.
func tlsPair(t *testing.T, name string) (pool *x509.CertPool, client tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hosts CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		KeyUsage: x509.KeyUsageDigitalSignature, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return pool, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// An origin authenticates by a client certificate instead of a token; a
// certificate of no configured origin, or rows of another origin than the
// credential's, are refused.
func TestCollector_MutualTLS(t *testing.T) {
	dsn := startPG(t)
	a, b := newHostLog(t, 12), newHostLog(t, 3)
	wpriv, _ := newKey(t)
	w, _ := fleet.NewWitness("w", wpriv)
	c, err := fleet.Open(context.Background(), fleet.Options{Postgres: dsn, Witness: w, Origins: []fleet.Origin{
		{Name: a.origin, PublicKey: a.pub, CertName: "host-a.example.org"},
		{Name: b.origin, PublicKey: b.pub, Token: "b-token"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pool, clientCert := tlsPair(t, "host-a.example.org")
	_, stranger := tlsPair(t, "host-z.example.org")
	srv := httptest.NewUnstartedServer(c.Handler())
	srv.TLS = &tls.Config{ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven}
	srv.StartTLS()
	defer srv.Close()
	post := func(cert *tls.Certificate, token string, rows [][]byte) int {
		tr := srv.Client().Transport.(*http.Transport).Clone()
		if cert != nil {
			tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
		}
		req, _ := http.NewRequest("POST", srv.URL+"/v1/ingest", bytes.NewReader(bytes.Join(rows, []byte("\n"))))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			return 0 // a certificate the CA did not sign fails the handshake
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	rowsA, rowsB := a.rows(t), b.rows(t)
	if got := post(&clientCert, "", rowsA); got != http.StatusOK {
		t.Fatalf("client certificate: %d, want 200", got)
	}
	if got := post(nil, "", rowsA); got != http.StatusUnauthorized {
		t.Fatalf("no credential: %d, want 401", got)
	}
	if got := post(&stranger, "", rowsA); got == http.StatusOK {
		t.Fatalf("a certificate of another CA: %d", got)
	}
	if got := post(nil, "b-token", rowsA); got != http.StatusForbidden {
		t.Fatalf("b's token with a's rows: %d, want 403", got)
	}
	if got := post(nil, "b-token", rowsB); got != http.StatusOK {
		t.Fatalf("b's token with b's rows: %d, want 200", got)
	}
}
