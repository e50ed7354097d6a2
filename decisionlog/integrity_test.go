package decisionlog_test

import (
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// policyLoad is a policy-load row for version v.
func policyLoad(v string) *decisionlog.Entry {
	return &decisionlog.Entry{Kind: decisionlog.KindPolicyLoad, Time: time.Now(),
		Body: json.RawMessage(fmt.Sprintf(`{"policy_version":%q,"trigger":"start"}`, v))}
}

func versioned(id, v string) *decisionlog.Entry {
	body := fmt.Sprintf(`{"decision_id":%q,"decision":"allow","principal":"Agent::\"a\"","policy_version":%q}`, id, v)
	return &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: json.RawMessage(body)}
}

// appendRaw appends a row after the last with a correctly chained hash, as
// an attacker with write access to the file but not the key would.
func appendRaw(t *testing.T, path string, e *decisionlog.Entry) {
	t.Helper()
	r, err := decisionlog.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	var prev *decisionlog.Entry
	r.Scan(t.Context(), 1, func(x *decisionlog.Entry) error { prev = x; return nil })
	r.Close()
	e.Seq = prev.Seq + 1
	e.Hash = decisionlog.ChainHash(prev.Hash, e)
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// A forger fills the log table's columns from the body, as the writer
	// does.
	cols, vals := "", ""
	for _, f := range wire.IndexedColumns {
		cols += ", " + f.Name
		vals += ", json_extract(?4, '" + f.Path + "')"
	}
	if _, err := db.Exec(`INSERT INTO log(seq, kind, time, body, hash`+cols+`) VALUES (?1, ?2, ?3, ?4, ?5`+vals+`)`, e.Seq, string(e.Kind), e.Time.UnixNano(), string(e.Body), e.Hash); err != nil {
		t.Fatal(err)
	}
}

func TestAttack_DeleteAllButTheLastCheckpoint(t *testing.T) {
	priv, pub := newKey(t)
	path := signedLog(t, priv, 25) // checkpoints at 11, 22 and 28 (at close)
	trusted := checkpointAt(t, path, 22)
	tamper(t, path, `DELETE FROM log WHERE seq < 28`)
	if _, err := verify(t, path, decisionlog.VerifyOptions{PublicKey: pub}); !isChainErrorAt(err, 1) {
		t.Errorf("deleting all but the last checkpoint: %v", err)
	}
	if _, err := verify(t, path, decisionlog.VerifyOptions{PublicKey: pub, Trusted: trusted}); !isChainErrorAt(err, 1) {
		t.Errorf("the same, with a trusted checkpoint at an earlier seq: %v", err)
	}
	// Without the key verify cannot check signatures, but a missing head
	// still needs a prune record.
	if _, err := verify(t, path, decisionlog.VerifyOptions{}); !isChainErrorAt(err, 1) {
		t.Errorf("without a key: %v", err)
	}
}

func TestAttack_PruneRecordForgedOrReused(t *testing.T) {
	priv, pub := newKey(t)
	path := signedLog(t, priv, 40) // checkpoints at 11, 22, 33, 44
	l := open(t, path, decisionlog.Options{SigningKey: priv, CheckpointEvery: 10})
	if _, err := l.Prune(t.Context(), 12, "max_rows=30"); err != nil {
		t.Fatal(err)
	}
	l.Close(t.Context())
	if _, err := verify(t, path, decisionlog.VerifyOptions{PublicKey: pub}); err != nil {
		t.Fatalf("after a prune: %v", err)
	}
	// Deleting more than the signed record says shows.
	tamper(t, path, `DELETE FROM log WHERE seq < 22`)
	if _, err := verify(t, path, decisionlog.VerifyOptions{PublicKey: pub}); !isChainErrorAt(err, 1) {
		t.Errorf("deleting past the prune record's anchor: %v", err)
	}
}

func TestPrune_KeepsReferencedPolicyLoadsAndLeavesSignedEvidence(t *testing.T) {
	priv, pub := newKey(t)
	path := filepath.Join(t.TempDir(), "d.db")
	l := open(t, path, decisionlog.Options{SigningKey: priv, CheckpointEvery: 5})
	// v1 loaded at seq 1 and still used after the anchor; v0 is not.
	must(t, l.Append(t.Context(), policyLoad("v1")))
	must(t, l.Append(t.Context(), policyLoad("v0")))
	for i := range 20 {
		must(t, l.Append(t.Context(), versioned(fmt.Sprintf("d-%d", i), "v1")))
	}
	res, err := l.Prune(t.Context(), 15, "max_age=1h")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Kept) != 1 || res.Kept[0] != 1 || res.Anchor < 10 {
		t.Fatalf("prune: %+v, want the v1 load (seq 1) kept", res)
	}
	r := openReader(t, path)
	if _, err := r.PolicyLoad(t.Context(), "v1"); err != nil {
		t.Errorf("the v1 load a retained decision names: %v", err)
	}
	if _, err := r.PolicyLoad(t.Context(), "v0"); !errors.Is(err, decisionlog.ErrNotFound) {
		t.Errorf("the v0 load nothing retained names: %v", err)
	}
	// The evidence: a prune row, signed, written before the deletion.
	es, err := r.Query(t.Context(), decisionlog.Filter{Kinds: []decisionlog.Kind{decisionlog.KindPrune}})
	if err != nil || len(es) != 1 {
		t.Fatalf("prune rows: %d %v", len(es), err)
	}
	var rec decisionlog.PruneRecord
	must(t, json.Unmarshal(es[0].Body, &rec))
	if err := rec.Open(pub); err != nil || rec.Anchor != res.Anchor || rec.Rule != "max_age=1h" {
		t.Errorf("prune record %+v: %v", rec, err)
	}
	r.Close()
	if _, err := verify(t, path, decisionlog.VerifyOptions{PublicKey: pub}); err != nil {
		t.Fatalf("verify after pruning: %v", err)
	}
	// The kept row is still checked: changing it shows.
	tamper(t, path, `UPDATE log SET body = replace(body, 'start', 'sighup') WHERE seq = 1`)
	if _, err := verify(t, path, decisionlog.VerifyOptions{PublicKey: pub}); !isChainErrorAt(err, 1) {
		t.Errorf("a kept row changed: %v", err)
	}
	tamper(t, path, `DELETE FROM log WHERE seq = 1`)
	if _, err := verify(t, path, decisionlog.VerifyOptions{PublicKey: pub}); !isChainErrorAt(err, 1) {
		t.Errorf("a kept row deleted: %v", err)
	}
}

func TestVerify_TrustedCheckpointBeforeThePrunedHead(t *testing.T) {
	priv, pub := newKey(t)
	path := signedLog(t, priv, 40)
	trusted := checkpointAt(t, path, 11) // signs the tree of 10 rows
	l := open(t, path, decisionlog.Options{SigningKey: priv, CheckpointEvery: 10})
	if _, err := l.Prune(t.Context(), 30, "max_rows=10"); err != nil {
		t.Fatal(err)
	}
	l.Close(t.Context())
	rep, err := verify(t, path, decisionlog.VerifyOptions{PublicKey: pub, Trusted: trusted})
	if err != nil || rep.TrustedSeq != 10 {
		t.Fatalf("a trusted checkpoint the pruned log extends: %+v %v", rep, err)
	}
	// A bare signed note (as a witness keeps it) past the anchor is checked
	// against the tree recomputed from the rows.
	bare, err := decisionlog.ParseCheckpoint([]byte(checkpointAt(t, path, 33).Note))
	must(t, err)
	if rep, err := verify(t, path, decisionlog.VerifyOptions{PublicKey: pub, Trusted: bare}); err != nil || rep.TrustedSeq != 32 {
		t.Fatalf("a bare note: %+v %v", rep, err)
	}
	// Rewrite the stored tree of the pruned part: the consistency proof fails.
	tamper(t, path, `UPDATE merkle SET hashes = zeroblob(length(hashes)) WHERE leaf < 20`)
	if _, err := verify(t, path, decisionlog.VerifyOptions{PublicKey: pub, Trusted: trusted}); err == nil {
		t.Error("a rewritten tree passes against the trusted checkpoint")
	}
}

// crashImage copies the log's files as they are while it is open, as a
// crash would leave them.
func crashImage(t *testing.T, path string) string {
	t.Helper()
	dir := t.TempDir()
	for _, suffix := range []string{"", "-wal", "-shm", ".state"} {
		b, err := os.ReadFile(path + suffix)
		if err != nil {
			continue
		}
		must(t, os.WriteFile(filepath.Join(dir, "d.db"+suffix), b, 0o600))
	}
	return filepath.Join(dir, "d.db")
}

func TestAttack_TailChangedWhileStopped(t *testing.T) {
	priv, pub := newKey(t)
	// A crash leaves rows after the last checkpoint unsigned.
	unsigned := func(t *testing.T) string {
		path := filepath.Join(t.TempDir(), "d.db")
		l := open(t, path, decisionlog.Options{SigningKey: priv, CheckpointEvery: 10})
		for i := range 15 {
			must(t, l.Append(t.Context(), decision(fmt.Sprintf("d-%d", i), "a", "allow")))
		}
		return crashImage(t, path)
	}
	tests := []struct {
		name string
		do   func(t *testing.T, path string)
		want string
	}{
		{"Untouched", func(*testing.T, string) {}, ""},
		{"TailCut", func(t *testing.T, p string) { tamper(t, p, `DELETE FROM log WHERE seq > 13`) }, "rows were removed"},
		{"TailCutBackToACheckpoint", func(t *testing.T, p string) { tamper(t, p, `DELETE FROM log WHERE seq > 11`) }, "rows were removed"},
		{"UnsignedTailEdited", func(t *testing.T, p string) {
			tamper(t, p, `UPDATE log SET body = replace(body, '"allow"', '"deny"') WHERE seq = 14`)
			rechain(t, p)
		}, "rewritten"},
		{"RowAppended", func(t *testing.T, p string) { appendRaw(t, p, decision("forged", "a", "allow")) }, "appended by something other"},
		{"StateDeleted", func(t *testing.T, p string) { os.Remove(decisionlog.StatePath(p)) }, "no tail state"},
		{"StateForged", func(t *testing.T, p string) {
			b, _ := os.ReadFile(decisionlog.StatePath(p))
			os.WriteFile(decisionlog.StatePath(p), []byte(strings.Replace(string(b), `"next_seq":16`, `"next_seq":17`, 1)), 0o600)
			appendRaw(t, p, decision("forged", "a", "allow"))
		}, "MAC does not verify"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := unsigned(t)
			tt.do(t, path)
			l, err := decisionlog.Open(t.Context(), path, decisionlog.Options{SigningKey: priv})
			var te *decisionlog.TailError
			if tt.want == "" {
				if err != nil {
					t.Fatalf("an untouched crash image: %v", err)
				}
				l.Close(t.Context())
				return
			}
			if !errors.As(err, &te) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want a tail error saying %q", err, tt.want)
			}
			if l != nil {
				t.Fatal("opened")
			}
			// Accepting the tail explicitly is recorded, then signed.
			l, err = decisionlog.Open(t.Context(), path, decisionlog.Options{SigningKey: priv, AcceptTail: true})
			if err != nil {
				t.Fatal(err)
			}
			must(t, l.Close(t.Context()))
			r := openReader(t, path)
			defer r.Close()
			es, err := r.Query(t.Context(), decisionlog.Filter{Kinds: []decisionlog.Kind{decisionlog.KindIntegrity}})
			accepted := 0
			for _, e := range es {
				if strings.Contains(string(e.Body), `"tail_accepted"`) {
					accepted++
				}
			}
			if err != nil || accepted != 1 {
				t.Fatalf("%d tail_accepted rows (%v)", accepted, err)
			}
			if _, err := decisionlog.Open(t.Context(), path, decisionlog.Options{SigningKey: priv}); err != nil {
				t.Errorf("reopening after accepting: %v", err)
			}
			_ = pub
		})
	}
}

func TestAttack_RowInsertedWhileRunningIsNeverSigned(t *testing.T) {
	priv, pub := newKey(t)
	path := filepath.Join(t.TempDir(), "d.db")
	l := open(t, path, decisionlog.Options{SigningKey: priv, CheckpointEvery: 1000})
	must(t, l.Append(t.Context(), decision("d-1", "a", "allow")))
	appendRaw(t, path, decision("forged", "a", "allow"))
	if err := l.Append(t.Context(), decision("d-2", "a", "allow")); err == nil {
		t.Fatal("appended after a foreign row")
	}
	if err := l.Append(t.Context(), decision("d-3", "a", "allow")); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("the writer goes on after a foreign row: %v", err)
	}
	l.Close(t.Context())
	// No checkpoint signs the forged row.
	rep, err := verify(t, path, decisionlog.VerifyOptions{PublicKey: pub})
	if err != nil || rep.LastSigned >= 2 {
		t.Errorf("the forged row (seq 2) was signed: %+v %v", rep, err)
	}
}

func TestAttack_DroppedTriggersAreRestoredAndRecorded(t *testing.T) {
	priv, _ := newKey(t)
	path := signedLog(t, priv, 3)
	tamper(t, path) // drops both
	if rep, err := verify(t, path, decisionlog.VerifyOptions{}); err != nil || len(rep.Unguarded) != 2 {
		t.Errorf("verify does not report the dropped triggers: %+v %v", rep, err)
	}
	db, _ := sql.Open("sqlite3", "file:"+path)
	_, err := db.Exec(`CREATE TRIGGER log_no_delete BEFORE DELETE ON log WHEN 0 BEGIN SELECT RAISE(ABORT, 'x'); END`)
	db.Close()
	must(t, err)
	l := open(t, path, decisionlog.Options{SigningKey: priv})
	must(t, l.Close(t.Context()))
	db, _ = sql.Open("sqlite3", "file:"+path)
	defer db.Close()
	if _, err := db.Exec(`DELETE FROM log WHERE seq = 1`); err == nil || !strings.Contains(err.Error(), "append-only") {
		t.Errorf("delete after restart: %v", err)
	}
	if _, err := db.Exec(`UPDATE log SET kind = 'x' WHERE seq = 1`); err == nil || !strings.Contains(err.Error(), "append-only") {
		t.Errorf("update after restart: %v", err)
	}
	if rep, err := verify(t, path, decisionlog.VerifyOptions{}); err != nil || len(rep.Unguarded) != 0 {
		t.Errorf("after the restart: %+v %v", rep, err)
	}
	var body string
	must(t, db.QueryRow(`SELECT body FROM log WHERE kind = 'integrity'`).Scan(&body))
	if !strings.Contains(body, "log_no_update") || !strings.Contains(body, "log_no_delete") {
		t.Errorf("integrity row: %s", body)
	}
}

func TestAttack_TwoWritersOnOneLog(t *testing.T) {
	priv, _ := newKey(t)
	path := filepath.Join(t.TempDir(), "d.db")
	l := open(t, path, decisionlog.Options{SigningKey: priv})
	must(t, l.Append(t.Context(), decision("d-1", "a", "allow")))
	before, _ := os.ReadFile(path + "-wal")
	_, err := decisionlog.Open(t.Context(), path, decisionlog.Options{SigningKey: priv})
	var le *decisionlog.LockedError
	if !errors.As(err, &le) || le.PID != os.Getpid() || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("a second writer: %v", err)
	}
	after, _ := os.ReadFile(path + "-wal")
	if string(before) != string(after) {
		t.Error("the second writer wrote to the log")
	}
	// Readers need no lock, and the first writer goes on.
	r := openReader(t, path)
	if n, _ := r.LastSeq(t.Context()); n != 1 {
		t.Errorf("reader: last seq %d", n)
	}
	r.Close()
	must(t, l.Append(t.Context(), decision("d-2", "a", "allow")))
}

func TestProof_InclusionCheckedByAnIndependentVerifier(t *testing.T) {
	priv, pub := newKey(t)
	path := signedLog(t, priv, 37)
	r := openReader(t, path)
	defer r.Close()
	last, _ := r.LastSeq(t.Context())
	for seq := int64(1); seq < last; seq++ {
		p, err := r.ProveRow(t.Context(), seq)
		if err != nil {
			t.Fatalf("prove %d: %v", seq, err)
		}
		b, _ := json.Marshal(p)
		if _, err := decisionlog.VerifyProof(b, pub); err != nil {
			t.Fatalf("verify-proof %d: %v", seq, err)
		}
		// transparency-dev/merkle's RFC 6962 verifier agrees, against the
		// root in the note that x/mod's note package opened.
		root := openRoot(t, p.Checkpoint, p.Origin, pub)
		leaf := rfc6962.DefaultHasher.HashLeaf(hexBytes(t, p.Row.Hash))
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(p.LeafIndex), uint64(p.TreeSize), leaf, hashes(p.Proof), root); err != nil {
			t.Fatalf("seq %d: independent verifier: %v", seq, err)
		}
	}
	// A tampered proof fails.
	p, _ := r.ProveDecision(t.Context(), "d-3")
	for name, change := range map[string]func(p *decisionlog.InclusionProof){
		"body":  func(p *decisionlog.InclusionProof) { p.Row.Body = strings.Replace(p.Row.Body, "allow", "deny", 1) },
		"path":  func(p *decisionlog.InclusionProof) { p.Proof[0][0] ^= 1 },
		"index": func(p *decisionlog.InclusionProof) { p.LeafIndex++; p.Row.Seq++ },
		"note": func(p *decisionlog.InclusionProof) {
			p.Checkpoint = strings.Replace(p.Checkpoint, fmt.Sprintf("\n%d\n", p.TreeSize), fmt.Sprintf("\n%d\n", p.TreeSize+1), 1)
			p.TreeSize++
		},
	} {
		b, _ := json.Marshal(p)
		var q decisionlog.InclusionProof
		json.Unmarshal(b, &q)
		change(&q)
		b, _ = json.Marshal(q)
		if _, err := decisionlog.VerifyProof(b, pub); err == nil {
			t.Errorf("a proof with its %s changed verifies", name)
		}
	}
	_, other := newKey(t)
	b, _ := json.Marshal(p)
	if _, err := decisionlog.VerifyProof(b, other); err == nil {
		t.Error("a proof verifies with another key")
	}
}

func TestProof_ConsistencyCheckedByAnIndependentVerifier(t *testing.T) {
	priv, pub := newKey(t)
	path := signedLog(t, priv, 40) // checkpoints sign sizes 10, 21, 32, 43
	l := open(t, path, decisionlog.Options{SigningKey: priv, CheckpointEvery: 10})
	_, err := l.Prune(t.Context(), 25, "max_rows=20")
	must(t, err)
	l.Close(t.Context())
	r := openReader(t, path)
	defer r.Close()
	for _, sizes := range [][2]int64{{10, 21}, {10, 43}, {21, 32}, {7, 32}} {
		p, err := r.ProveConsistency(t.Context(), sizes[0], sizes[1])
		if err != nil {
			t.Fatalf("%v: %v", sizes, err)
		}
		b, _ := json.Marshal(p)
		res, err := decisionlog.VerifyProof(b, pub)
		if err != nil {
			t.Fatalf("%v: %v", sizes, err)
		}
		if res.OldCheckpoint != (sizes[0] != 7 && sizes[0] != 10) {
			// 10's checkpoint row (seq 11) was pruned; 7 was never signed.
			t.Errorf("%v: old checkpoint in the file: %v", sizes, res.OldCheckpoint)
		}
		newRoot := openRoot(t, p.NewCheckpoint, p.Origin, pub)
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(p.OldSize), uint64(p.NewSize), hashes(p.Proof), p.OldRoot[:], newRoot); err != nil {
			t.Fatalf("%v: independent verifier: %v", sizes, err)
		}
		p.OldRoot[0] ^= 1
		b, _ = json.Marshal(p)
		if _, err := decisionlog.VerifyProof(b, pub); err == nil {
			t.Errorf("%v: a wrong old root verifies", sizes)
		}
	}
	// A size no checkpoint signs: the message gives the sizes either side.
	for size, says := range map[int64]string{
		30: "no checkpoint in the log signs tree size 30; the nearest checkpoints sign 21 and 32",
		// 45: the checkpoint Close signed, after the prune row.
		500: "no checkpoint in the log signs tree size 500; the nearest checkpoint signs 45 (",
	} {
		if _, err := r.ProveConsistency(t.Context(), 10, size); err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("consistency 10 %d: %v, want it to say %s", size, err, says)
		}
	}
	// A retained row is still provable after the prune.
	p, err := r.ProveDecision(t.Context(), "d-30")
	must(t, err)
	b, _ := json.Marshal(p)
	if _, err := decisionlog.VerifyProof(b, pub); err != nil {
		t.Fatal(err)
	}
}

func openRoot(t *testing.T, signed, origin string, pub ed25519.PublicKey) []byte {
	t.Helper()
	v, err := decisionlog.Verifier(origin, pub)
	must(t, err)
	n, err := note.Open([]byte(signed), note.VerifierList(v))
	must(t, err)
	_, _, root, err := decisionlog.ParseCheckpointText(n.Text)
	must(t, err)
	return root[:]
}

func hashes[H ~[32]byte](hs []H) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

func hexBytes(t *testing.T, s string) []byte {
	t.Helper()
	var b []byte
	_, err := fmt.Sscanf(s, "%x", &b)
	must(t, err)
	return b
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestPrune_TwiceKeepsWhatIsStillReferenced(t *testing.T) {
	priv, pub := newKey(t)
	path := filepath.Join(t.TempDir(), "d.db")
	l := open(t, path, decisionlog.Options{SigningKey: priv, CheckpointEvery: 5})
	must(t, l.Append(t.Context(), decision("pad", "a", "allow")))
	must(t, l.Append(t.Context(), policyLoad("v1"))) // seq 2: its neighbours go in the first prune
	must(t, l.Append(t.Context(), policyLoad("v2")))
	for i := range 12 {
		must(t, l.Append(t.Context(), versioned(fmt.Sprintf("a-%d", i), "v1")))
	}
	first, err := l.Prune(t.Context(), 10, "max_rows=8")
	must(t, err)
	for i := range 12 {
		must(t, l.Append(t.Context(), versioned(fmt.Sprintf("b-%d", i), "v1")))
	}
	second, err := l.Prune(t.Context(), first.Anchor+10, "max_rows=8")
	must(t, err)
	if len(first.Kept) != 1 || first.Kept[0] != 2 || len(second.Kept) != 1 || second.Kept[0] != 2 || second.Anchor <= first.Anchor {
		t.Fatalf("prunes: %+v then %+v", first, second)
	}
	l.Close(t.Context())
	if _, err := verify(t, path, decisionlog.VerifyOptions{PublicKey: pub}); err != nil {
		t.Fatalf("after two prunes: %v", err)
	}
	r := openReader(t, path)
	defer r.Close()
	p, err := r.ProveRow(t.Context(), 2) // the kept load, proven although its neighbours are gone
	must(t, err)
	b, _ := json.Marshal(p)
	if _, err := decisionlog.VerifyProof(b, pub); err != nil {
		t.Errorf("proof of the kept row: %v", err)
	}
}
