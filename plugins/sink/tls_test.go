package sink_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/plugins/sink"
)

// testPKI is a CA, a server certificate for 127.0.0.1 and a client
// certificate, all written as PEM files under dir.
type testPKI struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
	pool                                             *x509.CertPool
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	now := time.Now()
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "agentpdp test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, name string, usage x509.ExtKeyUsage) (string, string) {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage},
			KeyUsage: x509.KeyUsageDigitalSignature, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(k)
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", kder)
	}
	p := &testPKI{CA: write("ca.pem", "CERTIFICATE", caDER), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.ServerCert, p.ServerKey = leaf(2, "server", x509.ExtKeyUsageServerAuth)
	p.ClientCert, p.ClientKey = leaf(3, "host-a", x509.ExtKeyUsageClientAuth)
	return p
}

// TestHTTPSink_MutualTLS: ca_file verifies the receiver, cert_file and
// key_file answer its request for a client certificate; without them the
// handshake fails and the error says so.
func TestHTTPSink_MutualTLS(t *testing.T) {
	pki := newPKI(t)
	var clientCN string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		clientCN = r.TLS.PeerCertificates[0].Subject.CommonName
	}))
	cert, err := tls.LoadX509KeyPair(pki.ServerCert, pki.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.pool}
	srv.StartTLS()
	defer srv.Close()

	path, _ := pdptest.LogWith(t, 5)
	sk, err := sink.New(sink.Config{Name: "up", Type: "http", URL: srv.URL, CAFile: pki.CA, CertFile: pki.ClientCert, KeyFile: pki.ClientKey, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := pdptest.Shipper(t, path, sk).Once(t.Context()); err != nil {
		t.Fatalf("with the client certificate: %v", err)
	}
	if clientCN != "host-a" {
		t.Errorf("the receiver saw client %q", clientCN)
	}

	path2, _ := pdptest.LogWith(t, 1)
	noCert, _ := sink.New(sink.Config{Name: "up", Type: "http", URL: srv.URL, CAFile: pki.CA})
	if err := pdptest.Shipper(t, path2, noCert).Once(t.Context()); err == nil {
		t.Error("shipped without a client certificate")
	}
	noCA, _ := sink.New(sink.Config{Name: "up", Type: "http", URL: srv.URL, CertFile: pki.ClientCert, KeyFile: pki.ClientKey})
	if err := pdptest.Shipper(t, path2, noCA).Once(t.Context()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a receiver signed by an unknown CA: %v", err)
	}
	for _, c := range []sink.Config{
		{Name: "up", Type: "http", URL: srv.URL, CertFile: pki.ClientCert},
		{Name: "up", Type: "http", URL: srv.URL, CAFile: filepath.Join(t.TempDir(), "missing.pem")},
		{Name: "up", Type: "http", URL: srv.URL, CAFile: pki.ClientKey},
		{Name: "up", Type: "file", Path: "x", CAFile: pki.CA},
	} {
		if _, err := sink.New(c); err == nil {
			t.Errorf("accepted %+v", c)
		}
	}
}

// TestHTTPSink_Timeout: a receiver that never answers fails the request
// after timeout, not 30s.
func TestHTTPSink_Timeout(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	defer srv.Close()
	defer close(block)
	path, _ := pdptest.LogWith(t, 1)
	sk, _ := sink.New(sink.Config{Name: "up", Type: "http", URL: srv.URL, Timeout: 200 * time.Millisecond})
	start := time.Now()
	err := pdptest.Shipper(t, path, sk).Once(t.Context())
	if err == nil || time.Since(start) > 5*time.Second {
		t.Errorf("err %v after %v", err, time.Since(start))
	}
}
