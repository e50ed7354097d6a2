package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
)

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// checkChain verifies the hash chain of the whole log.
func checkChain(t *testing.T, db string) {
	t.Helper()
	r, err := decisionlog.OpenReader(db)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Verify(t.Context(), decisionlog.VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}

func timeSleep() { time.Sleep(10 * time.Millisecond) }

func osArgs0() string { return os.Args[0] }

// signingKeyIn writes a new Ed25519 checkpoint key pair into dir, as
// agentpdp keygen does (signing.key, 0600, and signing.key.pub), and
// returns both paths and the private key.
func signingKeyIn(t *testing.T, dir string) (keyFile, pubFile string, priv ed25519.PrivateKey) {
	t.Helper()
	privPEM, pubPEM, err := decisionlog.GenerateKey()
	must(t, err)
	keyFile, pubFile = filepath.Join(dir, "signing.key"), filepath.Join(dir, "signing.key.pub")
	must(t, os.WriteFile(keyFile, privPEM, 0o600))
	must(t, os.WriteFile(pubFile, pubPEM, 0o644))
	priv, err = decisionlog.ParsePrivateKey(privPEM)
	must(t, err)
	return keyFile, pubFile, priv
}
