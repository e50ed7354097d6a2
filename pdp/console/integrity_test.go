package console_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/decisionlog/fleet"
	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/console"
)

// consoleOver serves a console over the log at path, with no daemon behind
// it (the integrity page needs none).
func consoleOver(t *testing.T, path string, witnessKey ed25519.PublicKey) *fixture {
	t.Helper()
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte("alice:"+cheapHash(t, "alice password 1")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := decisionlog.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	admin := client.New(filepath.Join(t.TempDir(), "no.sock"))
	t.Cleanup(admin.Close)
	srv, err := console.New(console.Config{Reader: r, Admin: admin, UsersFile: users, WitnessKey: witnessKey})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return &fixture{t: t, srv: srv, http: hs, reader: r, users: users}
}

var cosigRowRE = regexp.MustCompile(`(?s)<tr><td>(\d+)</td><td>[^<]*</td><td>(\d+)</td>\s*<td>([^<]*)<details>.*?</details></td>\s*<td>([^<]*)<span class="muted">via sink ([^<]*)</span></td>\s*<td>([^<]*)</td>\s*<td>(.*?)</td></tr>`)

// The integrity page shows the witness cosignatures the log holds as rows
// (as the http sink with witness: true keeps them): which checkpoint each
// cosigns, the witness, its time, and with --witness-key whether it verifies.
func TestConsole_IntegrityShowsCosignatureRows(t *testing.T) {
	privPEM, _, err := decisionlog.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	priv, err := decisionlog.ParsePrivateKey(privPEM)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "d.db")
	l, err := decisionlog.Open(t.Context(), path, decisionlog.Options{SigningKey: priv, CheckpointEvery: 3, Origin: "example.org/host-a"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		body := fmt.Sprintf(`{"decision_id":"d-%d","decision":"allow","principal":"Agent::\"a\""}`, i)
		if err := l.Append(t.Context(), &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: json.RawMessage(body)}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := decisionlog.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var cp *decisionlog.Checkpoint
	var cpSeq int64
	pdptest.Eventually(t, "a checkpoint", func() bool {
		es, err := r.Query(t.Context(), decisionlog.Filter{Kinds: []decisionlog.Kind{decisionlog.KindCheckpoint}, Limit: 1})
		if err != nil || len(es) == 0 {
			return false
		}
		cp, err = decisionlog.ParseCheckpoint(es[0].Body)
		cpSeq = es[0].Seq
		return err == nil
	})

	keep := func(w *fleet.Witness, sink string) {
		t.Helper()
		cosigned, err := w.Cosign([]byte(cp.Note))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(decisionlog.Cosignature{TreeSize: cp.Seq, Checkpoint: string(cosigned), Witness: sink})
		if err := l.Append(t.Context(), &decisionlog.Entry{Kind: decisionlog.KindCosignature, Time: time.Now(), Body: body, Keys: &decisionlog.Keys{}}); err != nil {
			t.Fatal(err)
		}
	}
	witness := func(name string) *fleet.Witness {
		_, k, _ := ed25519.GenerateKey(rand.Reader)
		w, err := fleet.NewWitness(name, k)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	collector, impostor := witness("collector.example"), witness("collector.example")
	before := time.Now().Add(-time.Minute)
	keep(collector, "fleet")
	keep(impostor, "other")
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}

	type shown struct{ seq, size, cosigns, witness, sink, at, sig string }
	read := func(f *fixture) []shown {
		t.Helper()
		c := f.browser()
		f.signIn(c, "alice", "alice password 1")
		_, page := f.get(c, "/integrity")
		var out []shown
		for _, m := range cosigRowRE.FindAllStringSubmatch(page, -1) {
			out = append(out, shown{m[1], m[2], strings.TrimSpace(m[3]), strings.TrimSpace(m[4]), m[5], m[6], m[7]})
		}
		if len(out) != 2 {
			t.Fatalf("cosignature rows shown: %+v\n%s", out, page)
		}
		if !strings.Contains(page, "collector.example (row ") {
			t.Errorf("the checkpoint's row does not name its witness")
		}
		return out
	}
	wantRow := func(got shown, sink, sig string) {
		t.Helper()
		if got.size != fmt.Sprint(cp.Seq) || got.cosigns != fmt.Sprintf("checkpoint row %d", cpSeq) || got.witness != "collector.example" || got.sink != sink {
			t.Errorf("row %+v, want tree size %d, checkpoint row %d, witness collector.example via %s", got, cp.Seq, cpSeq, sink)
		}
		at, err := time.Parse("2006-01-02 15:04:05Z", got.at)
		if err != nil || at.Before(before.UTC().Truncate(time.Second)) || at.After(time.Now().UTC().Add(time.Minute)) {
			t.Errorf("cosigned at %q (%v), want about now", got.at, err)
		}
		if !strings.Contains(got.sig, sig) {
			t.Errorf("cosignature via %s: %q, want %q", sink, got.sig, sig)
		}
	}

	// Newest first: the impostor's row, then the collector's.
	rows := read(consoleOver(t, path, collector.PublicKey()))
	wantRow(rows[1], "fleet", `<span class="ok">verified</span>`)
	wantRow(rows[0], "other", "does not verify")

	rows = read(consoleOver(t, path, nil))
	wantRow(rows[1], "fleet", "not checked")
	wantRow(rows[0], "other", "not checked")
}
