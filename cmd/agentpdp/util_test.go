package main

import (
	"context"
	"encoding/json"
	"os"
	"os/signal"
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
