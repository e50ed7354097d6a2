package decisionlog_test

import (
	"crypto/ed25519"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/agentpdp/agentpdp/decisionlog"
)

func newKey(t *testing.T) (ed25519.PrivateKey, ed25519.PublicKey) {
	t.Helper()
	privPEM, pubPEM, err := decisionlog.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	priv, err := decisionlog.ParsePrivateKey(privPEM)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := decisionlog.ParsePublicKey(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

// signedLog writes n decisions with a checkpoint every 10 rows and closes
// the log, which signs the rest.
func signedLog(t *testing.T, priv ed25519.PrivateKey, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "d.db")
	l, err := decisionlog.Open(t.Context(), path, decisionlog.Options{SigningKey: priv, CheckpointEvery: 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := l.Append(t.Context(), decision(fmt.Sprintf("d-%d", i), "a", "allow")); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	return path
}

func verify(t *testing.T, path string, opts decisionlog.VerifyOptions) (*decisionlog.VerifyReport, error) {
	t.Helper()
	r, err := decisionlog.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	return r.Verify(t.Context(), opts)
}

func checkpointAt(t *testing.T, path string, seq int64) *decisionlog.Checkpoint {
	t.Helper()
	r, err := decisionlog.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var c *decisionlog.Checkpoint
	r.Scan(t.Context(), seq, func(e *decisionlog.Entry) error {
		if e.Kind != decisionlog.KindCheckpoint {
			t.Fatalf("seq %d is a %s", e.Seq, e.Kind)
		}
		b, _ := json.Marshal(e) // as shipped or exported
		var err error
		c, err = decisionlog.ParseCheckpoint(b)
		if err != nil {
			t.Fatal(err)
		}
		return errors.New("stop")
	})
	return c
}

func TestCheckpoints_WrittenAndVerified(t *testing.T) {
	priv, pub := newKey(t)
	path := signedLog(t, priv, 25)
	rep, err := verify(t, path, decisionlog.VerifyOptions{PublicKey: pub})
	if err != nil {
		t.Fatal(err)
	}
	// 25 decisions: checkpoints after rows 10 and 21 (10 decisions + the
	// first checkpoint), and one at close covering the last 5.
	if rep.Checkpoints != 3 || rep.Rows != 28 || rep.Unsigned != 0 || !rep.SignaturesChecked || rep.LastSigned != 27 {
		t.Errorf("report: %+v", rep)
	}
	// A checkpoint signs the row before it, with the log's origin.
	c := checkpointAt(t, path, 11)
	if c.Seq != 10 || c.Verify(pub) != nil || c.Origin != rep.Origin {
		t.Errorf("checkpoint: %+v", c)
	}
}

func TestCheckpoints_WhenIdle(t *testing.T) {
	priv, pub := newKey(t)
	path := filepath.Join(t.TempDir(), "d.db")
	l, err := decisionlog.Open(t.Context(), path, decisionlog.Options{SigningKey: priv, CheckpointInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(t.Context())
	if err := l.Append(t.Context(), decision("d-1", "a", "allow")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		rep, err := verify(t, path, decisionlog.VerifyOptions{PublicKey: pub})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Checkpoints == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint while idle")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Idle with nothing new: no further checkpoints.
	time.Sleep(100 * time.Millisecond)
	if rep, _ := verify(t, path, decisionlog.VerifyOptions{PublicKey: pub}); rep.Checkpoints != 1 {
		t.Errorf("checkpoints of nothing: %d", rep.Checkpoints)
	}
}

// tamper opens the file as an attacker would, without the triggers.
func tamper(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range append([]string{`DROP TRIGGER IF EXISTS log_no_update`, `DROP TRIGGER IF EXISTS log_no_delete`}, stmts...) {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// rechain recomputes every hash from seq 1, as an attacker without the
// signing key would after editing rows.
func rechain(t *testing.T, path string) {
	t.Helper()
	r, err := decisionlog.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	var prev []byte
	var updates []string
	r.Scan(t.Context(), 1, func(e *decisionlog.Entry) error {
		e.Hash = decisionlog.ChainHash(prev, e)
		prev = e.Hash
		updates = append(updates, fmt.Sprintf(`UPDATE log SET hash = x'%s' WHERE seq = %d`, hex.EncodeToString(e.Hash), e.Seq))
		return nil
	})
	r.Close()
	tamper(t, path, updates...)
}

func TestVerify_CatchesTampering(t *testing.T) {
	priv, pub := newKey(t)
	otherPriv, _ := newKey(t)
	tests := []struct {
		name    string
		do      func(t *testing.T, path string)
		trusted bool
		seq     int64
	}{
		{"ChangedByte", func(t *testing.T, p string) {
			tamper(t, p, `UPDATE log SET body = replace(body, '"d-4"', '"d-X"') WHERE seq = 5`)
		}, false, 5},
		{"DeletedRow", func(t *testing.T, p string) { tamper(t, p, `DELETE FROM log WHERE seq = 7`) }, false, 7},
		{"SwappedRows", func(t *testing.T, p string) {
			tamper(t, p, `UPDATE log SET seq = 100 WHERE seq = 3`, `UPDATE log SET seq = 3 WHERE seq = 4`, `UPDATE log SET seq = 4 WHERE seq = 100`)
		}, false, 3},
		{"InsertedRow", func(t *testing.T, p string) {
			tamper(t, p, `UPDATE log SET seq = seq + 1000 WHERE seq >= 3`, `UPDATE log SET seq = seq - 999 WHERE seq >= 1000`,
				`INSERT INTO log(seq, kind, time, body, hash) SELECT 3, kind, time, body, hash FROM log WHERE seq = 2`)
		}, false, 3},
		{"ChangedAndRechained", func(t *testing.T, p string) {
			tamper(t, p, `UPDATE log SET body = replace(body, '"allow"', '"deny"') WHERE seq = 2`)
			rechain(t, p)
		}, false, 11}, // the first checkpoint no longer signs the chain
		{"ForgedCheckpoint", func(t *testing.T, p string) {
			// Rewrite row 2, rechain, and re-sign every checkpoint with another key.
			tamper(t, p, `UPDATE log SET body = replace(body, '"allow"', '"deny"') WHERE seq = 2`)
			forge(t, p, otherPriv)
		}, false, 11},
		{"TruncatedTail", func(t *testing.T, p string) { tamper(t, p, `DELETE FROM log WHERE seq > 15`) }, true, 16},
		{"RewrittenBeforeTrusted", func(t *testing.T, p string) {
			tamper(t, p, `UPDATE log SET body = replace(body, '"allow"', '"deny"') WHERE seq = 12`)
			rechain(t, p)
		}, true, 21},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := signedLog(t, priv, 25)
			opts := decisionlog.VerifyOptions{PublicKey: pub}
			if tt.trusted {
				opts.Trusted = checkpointAt(t, path, 22) // covers seq 21
			}
			if _, err := verify(t, path, opts); err != nil {
				t.Fatalf("untouched log fails: %v", err)
			}
			tt.do(t, path)
			_, err := verify(t, path, opts)
			var ce *decisionlog.ChainError
			if !errors.As(err, &ce) || ce.Seq != tt.seq {
				t.Errorf("got %v, want a failure at seq %d", err, tt.seq)
			}
		})
	}
}

// forge re-signs every checkpoint with key after rechaining, as an attacker
// with their own key would.
func forge(t *testing.T, path string, key ed25519.PrivateKey) {
	t.Helper()
	for range 3 { // each re-signed checkpoint changes the hashes after it
		rechain(t, path)
		r, _ := decisionlog.OpenReader(path)
		var updates []string
		var prev []byte
		r.Scan(t.Context(), 1, func(e *decisionlog.Entry) error {
			if e.Kind == decisionlog.KindCheckpoint {
				var c decisionlog.Checkpoint
				json.Unmarshal(e.Body, &c)
				c.HeadHash = hex.EncodeToString(prev)
				c.KeyID = decisionlog.KeyID(key.Public().(ed25519.PublicKey))
				c.Note = forgeNote(t, c.Note, c.Origin, key)
				b, _ := json.Marshal(c)
				updates = append(updates, fmt.Sprintf(`UPDATE log SET body = '%s' WHERE seq = %d`, b, e.Seq))
			}
			prev = e.Hash
			return nil
		})
		r.Close()
		tamper(t, path, updates...)
	}
	rechain(t, path)
}

// forgeNote signs the text of a checkpoint note again with key, under the
// same key name, as an attacker with their own key would.
func forgeNote(t *testing.T, signed, origin string, key ed25519.PrivateKey) string {
	t.Helper()
	text, _, _ := strings.Cut(signed, "\n\n")
	vkey, err := note.NewEd25519VerifierKey(origin, key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	v, _ := note.NewVerifier(vkey)
	b, err := note.Sign(&note.Note{Text: text + "\n"}, edSigner{v, key})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type edSigner struct {
	note.Verifier
	key ed25519.PrivateKey
}

func (s edSigner) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.key, msg), nil }
