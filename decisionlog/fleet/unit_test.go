package fleet_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/agentpdp/agentpdp/decisionlog/fleet"
)

// Rows as the http sink ships them parse back to bodies whose hashes
// chain, checkpoints included; anything else is refused with a reason.
func TestParseRow_RoundTrip(t *testing.T) {
	h := newHostLog(t, 23)
	rows := h.rows(t)
	var prev []byte
	for _, b := range rows {
		r, err := fleet.ParseRow(b)
		if err != nil {
			t.Fatal(err)
		}
		if r.Origin != h.origin || !r.ChainOK(prev) {
			t.Fatalf("seq %d: origin %q, chain ok %v", r.Seq, r.Origin, r.ChainOK(prev))
		}
		prev = r.Hash
	}
	for name, bad := range map[string]string{
		"not an object":   `[1]`,
		"envelope order":  `{"seq":1,"origin":"a","kind":"decision","time":"2026-01-01T00:00:00Z","hash":"00"}`,
		"short hash":      `{"origin":"a","seq":1,"kind":"decision","time":"2026-01-01T00:00:00Z","hash":"00"}`,
		"seq zero":        `{"origin":"a","seq":0,"kind":"decision","time":"2026-01-01T00:00:00Z","hash":"` + strings.Repeat("00", 32) + `"}`,
		"truncated body":  `{"origin":"a","seq":1,"kind":"decision","time":"2026-01-01T00:00:00Z","hash":"` + strings.Repeat("00", 32) + `","x":`,
		"bad time":        `{"origin":"a","seq":1,"kind":"decision","time":"yesterday","hash":"` + strings.Repeat("00", 32) + `"}`,
		"missing members": `{"origin":"a"}`,
	} {
		if _, err := fleet.ParseRow([]byte(bad)); err == nil {
			t.Errorf("%s: parsed %s", name, bad)
		}
	}
	// One changed byte in the body breaks the chain.
	r, _ := fleet.ParseRow(bytes.Replace(rows[0], []byte(`"allow"`), []byte(`"deny"`), 1))
	if r != nil && r.ChainOK(nil) {
		t.Fatal("a changed body still chains")
	}
}

func TestWitness_CosignVerify(t *testing.T) {
	priv, pub := newKey(t)
	w, err := fleet.NewWitness("witness.example", priv)
	if err != nil {
		t.Fatal(err)
	}
	tree := fleet.NewTree()
	for i := range 5 {
		tree.Append(bytes.Repeat([]byte{byte(i)}, 32))
	}
	body := []byte("host-a\n5\n" + b64(tree.Root()) + "\n")
	signed, err := w.Cosign(body)
	if err != nil {
		t.Fatal(err)
	}
	c, err := fleet.VerifyCosigned(signed, pub)
	if err != nil {
		t.Fatal(err)
	}
	if c.Origin != "host-a" || c.Size != 5 || !bytes.Equal(c.Hash, tree.Root()) || c.Witness != "witness.example" {
		t.Fatalf("got %+v", c)
	}
	// The signed message is C2SP's: changing the body, or the key, fails.
	if _, err := fleet.VerifyCosigned(bytes.Replace(signed, []byte("\n5\n"), []byte("\n6\n"), 1), pub); err == nil {
		t.Fatal("a changed tree size verified")
	}
	_, other := newKey(t)
	if _, err := fleet.VerifyCosigned(signed, other); err == nil {
		t.Fatal("verified with another key")
	}
	if _, err := fleet.VerifyCosigned(body, pub); err == nil {
		t.Fatal("an unsigned checkpoint verified")
	}
	// A second cosignature keeps the first.
	w2, _ := fleet.NewWitness("second", priv)
	both, err := w2.Cosign(signed)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(both), "\n— "); n != 2 {
		t.Fatalf("%d signature lines, want 2:\n%s", n, both)
	}
	if _, err := fleet.VerifyCosigned(both, pub); err != nil {
		t.Fatal(err)
	}
}
