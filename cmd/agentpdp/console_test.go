package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
)

func TestConsole_AddUser(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users")
	add := func(name, stdin string) (int, string) {
		var out, errb strings.Builder
		code := run(t.Context(), []string{"console", "add-user", name, "--users", users}, strings.NewReader(stdin), &out, &errb)
		return code, errb.String()
	}
	if code, stderr := add("carol@example.com", "a long enough password\n"); code != 0 {
		t.Fatalf("add-user: exit %d: %s", code, stderr)
	}
	b, err := os.ReadFile(users)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^carol@example\.com:\$argon2id\$v=19\$m=65536,t=3,p=2\$\S+\$\S+\n$`).Match(b) {
		t.Errorf("accounts file: %q", b)
	}
	for _, c := range []struct {
		name, stdin string
		code        int
		msg         string
	}{
		{"dave", "short\n", exitFail, "at least 12 characters"},
		{"dave", "", exitFail, "no password on standard input: run it in a terminal to be asked for one, or pipe it in"},
		{"bad name", "a long enough password\n", exitUsage, "user name"},
		{"bad:name", "a long enough password\n", exitUsage, "user name"},
	} {
		if code, stderr := add(c.name, c.stdin); code != c.code || !strings.Contains(stderr, c.msg) {
			t.Errorf("add-user %q with %q: exit %d %q, want %d and %q", c.name, c.stdin, code, stderr, c.code, c.msg)
		}
	}
	if code, _, stderr := runCLI(t, "console", "add-user", "--users", users); code != exitUsage {
		t.Errorf("add-user without a name: exit %d %s", code, stderr)
	}
}

func TestConsole_ConfigFile(t *testing.T) {
	d := newDaemonDir(t)
	d.start()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "console.yaml")

	must(t, os.WriteFile(cfg, []byte("listen: 127.0.0.1:0\nbogus: 1\n"), 0o644))
	if code, _, stderr := runCLI(t, "console", "--config", cfg); code != exitUsage || !strings.Contains(stderr, "bogus") {
		t.Errorf("an unknown key: exit %d %s", code, stderr)
	}
	if code, _, stderr := runCLI(t, "console", "--listen", "nowhere", "--db", d.db()); code != exitUsage || !strings.Contains(stderr, "listen") {
		t.Errorf("a bad --listen: exit %d %s", code, stderr)
	}

	bad := filepath.Join(dir, "bad.pub")
	must(t, os.WriteFile(bad, []byte("not a key\n"), 0o644))
	if code, _, stderr := runCLI(t, "console", "--listen", "127.0.0.1:0", "--db", d.db(), "--witness-key", bad); code == 0 || !strings.Contains(stderr, "witness_key "+bad) {
		t.Errorf("a bad --witness-key: exit %d %s", code, stderr)
	}
	_, pub, err := decisionlog.GenerateKey()
	must(t, err)
	wkey := filepath.Join(dir, "collector.key.pub")
	must(t, os.WriteFile(wkey, pub, 0o644))
	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf("listen: 127.0.0.1:1\ndb: %s\nadmin_socket: %s\nusers: %s\noperator: ops\npending_window: 5m\nwitness_key: %s\n",
		d.db(), d.asock(), filepath.Join(dir, "users"), wkey)), 0o644))
	// --listen on the command line wins over the file's.
	base, stop := runConsole(t, `one-time sign-in as ops \(valid once, for 15m0s\): (http://127\.0\.0\.1:\d+)/login/link/`,
		"console", "--config", cfg, "--listen", "127.0.0.1:0")
	resp, err := http.Get(base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /login: %d", resp.StatusCode)
	}
	stop()
}

// runConsole runs a console in-process until stop, and returns the first
// group of the first output line that matches re.
func runConsole(t *testing.T, re string, args ...string) (string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	out := &lockedWriter{w: &strings.Builder{}}
	errb := &lockedWriter{w: &strings.Builder{}}
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, strings.NewReader(""), out, errb) }()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(30 * time.Second)
	var m []string
	for m == nil {
		if m = rx.FindStringSubmatch(out.String()); m != nil {
			break
		}
		select {
		case code := <-done:
			t.Fatalf("console exited %d: %s", code, errb)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("console printed nothing matching %s: %s %s", re, out, errb)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopped := false
	stop := func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("console exited %d after its context ended: %s", code, errb)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("console did not stop")
		}
	}
	t.Cleanup(stop)
	return m[1], stop
}

func TestConsole_TLS(t *testing.T) {
	d := newDaemonDir(t)
	d.start()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	must(t, err)
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	must(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	must(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))

	if code, _, stderr := runCLI(t, "console", "--db", d.db(), "--tls-cert", certFile); code != exitUsage || !strings.Contains(stderr, "tls_key") {
		t.Errorf("a certificate without its key: exit %d %s", code, stderr)
	}
	base, _ := runConsole(t, `agentpdp console: (https://\S+)`, "console", "--listen", "127.0.0.1:0", "--db", d.db(), "--admin-socket", d.asock(),
		"--users", filepath.Join(dir, "users"), "--tls-cert", certFile, "--tls-key", keyFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get(base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var secure bool
	for _, ck := range resp.Cookies() {
		secure = secure || ck.Name == "agentpdp_login" && ck.Secure
	}
	if resp.StatusCode != http.StatusOK || !secure {
		t.Errorf("GET /login over TLS: %d, Secure cookie %v", resp.StatusCode, secure)
	}
}
