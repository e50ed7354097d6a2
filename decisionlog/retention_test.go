package decisionlog_test

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
)

func TestPrune_KeepsTheChainVerifiable(t *testing.T) {
	priv, pub := newKey(t)
	path := signedLog(t, priv, 40) // checkpoints at seq 11, 22, 33, and one at close
	l := open(t, path, decisionlog.Options{SigningKey: priv, CheckpointEvery: 10})
	res, err := l.Prune(t.Context(), 25, "max_rows=15")
	if err != nil {
		t.Fatal(err)
	}
	// The newest checkpoint whose signed row is ≤ 25 is seq 22 (it signs 21).
	if res.Anchor != 22 || res.Deleted != 21 {
		t.Fatalf("prune: %+v, want anchor 22 after deleting 21 rows", res)
	}
	rep, err := verify(t, path, decisionlog.VerifyOptions{PublicKey: pub})
	if err != nil {
		t.Fatalf("verify after pruning: %v", err)
	}
	if rep.Anchor != 22 || rep.Checkpoints < 2 {
		t.Errorf("report: %+v", rep)
	}
	// Appending and pruning keep working; the append-only guard is back.
	if err := l.Append(t.Context(), decision("d-new", "a", "allow")); err != nil {
		t.Fatal(err)
	}
	if _, err := verify(t, path, decisionlog.VerifyOptions{PublicKey: pub}); err != nil {
		t.Fatalf("verify after an append: %v", err)
	}
	l.Close(t.Context())
	// The provenance index forgets the pruned rows once it has caught up.
	idx, err := sql.Open("sqlite3", decisionlog.IndexPath(path))
	if err != nil {
		t.Fatal(err)
	}
	var below, after int
	err = idx.QueryRow(`SELECT count(*) FILTER (WHERE seq < 22), count(*) FILTER (WHERE seq >= 22) FROM keys`).Scan(&below, &after)
	idx.Close()
	if err != nil || below != 0 || after == 0 {
		t.Errorf("index after pruning: %d keys of pruned rows, %d of kept ones (%v)", below, after, err)
	}
	tamper(t, path, `UPDATE log SET body = replace(body, '"allow"', '"deny"') WHERE seq = 30`)
	if _, err := verify(t, path, decisionlog.VerifyOptions{PublicKey: pub}); !isChainErrorAt(err, 30) {
		t.Errorf("tampering after pruning: %v", err)
	}
}

func TestPrune_StartMustBeACheckpoint(t *testing.T) {
	priv, pub := newKey(t)
	path := signedLog(t, priv, 25)
	// Deleting the oldest rows by hand, not to a checkpoint, shows.
	tamper(t, path, `DELETE FROM log WHERE seq < 5`)
	if _, err := verify(t, path, decisionlog.VerifyOptions{PublicKey: pub}); !isChainErrorAt(err, 1) {
		t.Errorf("a start that is not a checkpoint: %v", err)
	}
}

func TestPrune_NeedsAnAnchor(t *testing.T) {
	priv, _ := newKey(t)
	l := open(t, filepath.Join(t.TempDir(), "d.db"), decisionlog.Options{SigningKey: priv}) // no checkpoint yet
	for i := range 5 {
		l.Append(t.Context(), decision(fmt.Sprintf("d-%d", i), "a", "allow"))
	}
	if _, err := l.Prune(t.Context(), 3, "max_rows=2"); !errors.Is(err, decisionlog.ErrNoAnchor) {
		t.Errorf("pruning without checkpoints: %v", err)
	}
}

func TestPrune_NeedsTheSigningKey(t *testing.T) {
	priv, _ := newKey(t)
	path := signedLog(t, priv, 25)
	l := open(t, path, decisionlog.Options{})
	if _, err := l.Prune(t.Context(), 20, "max_rows=5"); err == nil || !strings.Contains(err.Error(), "signing key") {
		t.Errorf("pruning without the key: %v", err)
	}
	l.Close(t.Context())
	if _, err := decisionlog.PruneFile(t.Context(), path, 20, "max_rows=5", nil); err == nil || !strings.Contains(err.Error(), "signing key") {
		t.Errorf("pruning the file without the key: %v", err)
	}
}

func TestPruneBound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.db")
	l := open(t, path, decisionlog.Options{})
	for i := range 10 {
		l.Append(t.Context(), decision(fmt.Sprintf("d-%d", i), "a", "allow"))
	}
	c, err := decisionlog.OpenCursors(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Advance(t.Context(), "upstream", 6); err != nil {
		t.Fatal(err)
	}
	if err := c.Advance(t.Context(), "upstream", 4); err != nil { // never moves back
		t.Fatal(err)
	}
	if got, _ := c.Get(t.Context(), "upstream"); got != 6 {
		t.Errorf("cursor: %d", got)
	}
	now := time.Now()
	for _, tt := range []struct {
		name    string
		maxAge  time.Duration
		maxRows int64
		sinks   []string
		want    int64
	}{
		{"AllOld", time.Nanosecond, 0, nil, 10},
		{"NoneOld", time.Hour, 0, nil, 0},
		{"MaxRows", 0, 3, nil, 7},
		{"HeldBySink", time.Nanosecond, 0, []string{"upstream"}, 6},
		{"HeldBySinkThatShippedNothing", time.Nanosecond, 0, []string{"upstream", "archive"}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := l.PruneBound(t.Context(), tt.maxAge, tt.maxRows, tt.sinks, now.Add(time.Millisecond))
			if err != nil || got != tt.want {
				t.Errorf("got %d %v, want %d", got, err, tt.want)
			}
		})
	}
}

func isChainErrorAt(err error, seq int64) bool {
	var ce *decisionlog.ChainError
	return errors.As(err, &ce) && ce.Seq == seq
}
