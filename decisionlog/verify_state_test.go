package decisionlog_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/agentpdp/agentpdp/decisionlog"
)

// checkpointSeqs returns the seqs of the log's checkpoint rows, in order.
func checkpointSeqs(t *testing.T, path string) []int64 {
	t.Helper()
	r := openReader(t, path)
	defer r.Close()
	es, err := r.Query(t.Context(), decisionlog.Filter{Kinds: []decisionlog.Kind{decisionlog.KindCheckpoint}})
	must(t, err)
	var seqs []int64
	for _, e := range es {
		seqs = append(seqs, e.Seq)
	}
	if len(seqs) < 2 {
		t.Fatalf("want at least 2 checkpoints, have %v", seqs)
	}
	if seqs[0] > seqs[len(seqs)-1] {
		for i, j := 0, len(seqs)-1; i < j; i, j = i+1, j-1 {
			seqs[i], seqs[j] = seqs[j], seqs[i]
		}
	}
	return seqs
}

// A tail cut off back to an earlier checkpoint, the last checkpoints
// included, verifies by the chain and signatures alone (issue 14): the
// writer's tail state file beside the log is what catches it.
func TestVerify_TailCutCaughtByTheWritersState(t *testing.T) {
	priv, pub := newKey(t)
	path := signedLog(t, priv, 25)
	state := decisionlog.StatePath(path)

	rep, err := verify(t, path, decisionlog.VerifyOptions{PublicKey: pub, StatePath: state, StateKey: priv})
	if err != nil || rep.TailState != "authenticated" || rep.TailStateSeq != rep.LastSeq {
		t.Fatalf("untouched log: %+v %v", rep, err)
	}
	rep, err = verify(t, path, decisionlog.VerifyOptions{PublicKey: pub, StatePath: state})
	if err != nil || rep.TailState != "unauthenticated" {
		t.Fatalf("untouched log, no signing key: %+v %v", rep, err)
	}

	seqs := checkpointSeqs(t, path)
	cutTo := seqs[len(seqs)-2] // the log now ends at an earlier checkpoint
	last := rep.LastSeq
	tamper(t, path, fmt.Sprintf(`DELETE FROM log WHERE seq > %d`, cutTo), fmt.Sprintf(`DELETE FROM merkle WHERE leaf >= %d`, cutTo))
	if _, err := verify(t, path, decisionlog.VerifyOptions{PublicKey: pub}); err != nil {
		t.Fatalf("without the state file the cut log should still verify by its chain (the gap this closes): %v", err)
	}
	_, err = verify(t, path, decisionlog.VerifyOptions{PublicKey: pub, StatePath: state})
	want := fmt.Sprintf("the log ends at seq %d but its writer's state file records seq %d: rows %d to %d were cut", cutTo, last, cutTo+1, last)
	var ce *decisionlog.ChainError
	if !errors.As(err, &ce) || ce.Problem != want || ce.Seq != cutTo+1 {
		t.Fatalf("cut tail: got %v, want a chain error %q", err, want)
	}

	// The attacker rewrites the state file to match the cut log: read
	// without the key it passes (and says so); with the key it fails.
	var st map[string]any
	b, err := os.ReadFile(state)
	must(t, err)
	must(t, json.Unmarshal(b, &st))
	r := openReader(t, path)
	es, err := r.Query(t.Context(), decisionlog.Filter{})
	r.Close()
	must(t, err)
	var head string
	for _, e := range es {
		if e.Seq == cutTo {
			head = fmt.Sprintf("%x", e.Hash)
		}
	}
	st["seq"], st["next_seq"], st["head"], st["next_head"] = cutTo, cutTo, head, head
	b, _ = json.Marshal(st)
	must(t, os.WriteFile(state, b, 0o600))
	if rep, err := verify(t, path, decisionlog.VerifyOptions{PublicKey: pub, StatePath: state}); err != nil || rep.TailState != "unauthenticated" {
		t.Fatalf("forged state without the key: %+v %v", rep, err)
	}
	_, err = verify(t, path, decisionlog.VerifyOptions{PublicKey: pub, StatePath: state, StateKey: priv})
	var se *decisionlog.TailStateError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "MAC does not verify") {
		t.Fatalf("forged state with the key: got %v, want a tail state error", err)
	}

	// No state file: reported, not a failure.
	must(t, os.Remove(state))
	if rep, err := verify(t, path, decisionlog.VerifyOptions{PublicKey: pub, StatePath: state, StateKey: priv}); err != nil || rep.TailState != "missing" {
		t.Fatalf("no state file: %+v %v", rep, err)
	}
}
