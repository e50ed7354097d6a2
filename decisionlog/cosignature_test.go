package decisionlog_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
)

// A cosignature row does not make a checkpoint due: an idle host would
// otherwise sign, be cosigned, keep the cosignature, and sign again,
// forever.
func TestLog_CosignatureDoesNotCallForACheckpoint(t *testing.T) {
	priv, _ := newKey(t)
	path := filepath.Join(t.TempDir(), "d.db")
	l, err := decisionlog.Open(t.Context(), path, decisionlog.Options{SigningKey: priv, CheckpointInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(t.Context())
	if err := l.Append(t.Context(), decision("d-1", "a", "allow")); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		rows, err := l.Query(t.Context(), decisionlog.Filter{Kinds: []decisionlog.Kind{decisionlog.KindCheckpoint}})
		if err != nil {
			t.Fatal(err)
		}
		return len(rows)
	}
	deadline := time.Now().Add(5 * time.Second)
	for count() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no interval checkpoint after a decision")
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := count()
	if err := l.Append(t.Context(), &decisionlog.Entry{Kind: decisionlog.KindCosignature, Time: time.Now(),
		Body: []byte(`{"tree_size":1,"checkpoint":"x\n1\nAAAA\n\n— w AAAA\n","witness":"fleet"}`), Keys: &decisionlog.Keys{}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // six intervals
	if got := count(); got != before {
		t.Fatalf("%d checkpoints after a cosignature row, want %d", got, before)
	}
}
