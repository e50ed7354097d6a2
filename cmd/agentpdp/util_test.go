package main

import (
	"bytes"
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

// checkChain recomputes the hash chain of the whole log.
func checkChain(t *testing.T, db string) {
	t.Helper()
	r, err := decisionlog.OpenReader(db)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var prev []byte
	var n int64
	err = r.Scan(t.Context(), 1, func(e *decisionlog.Entry) error {
		n++
		if e.Seq != n || !bytes.Equal(decisionlog.ChainHash(prev, e), e.Hash) {
			t.Fatalf("chain broken at seq %d", e.Seq)
		}
		prev = e.Hash
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func timeSleep() { time.Sleep(10 * time.Millisecond) }
