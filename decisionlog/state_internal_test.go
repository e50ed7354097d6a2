package decisionlog

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// The writer encodes the tail state by hand, once per commit; readers and
// the MAC check use encoding/json. Both must give the same bytes, or every
// state the writer leaves would fail its MAC.
func TestState_HandEncodingIsEncodingJSON(t *testing.T) {
	head := bytes.Repeat([]byte{0xab, 0x01}, 16)
	next := bytes.Repeat([]byte{0x7f}, 32)
	for _, origin := range []string{"", "agentpdp-host-1", `quote " and \ back`, "<&> html", "é ü \u2028 \u2029 \x01 \t", "\xff invalid utf-8"} {
		for _, c := range []struct {
			seq, nextSeq int64
			head, next   []byte
		}{{0, 0, nil, nil}, {0, 3, nil, next}, {41, 1 << 40, head, next}, {-1, 9, head, nil}} {
			quoted, err := json.Marshal(origin)
			if err != nil {
				t.Fatal(err)
			}
			st := tailState{Origin: origin, Seq: c.seq, Head: hex.EncodeToString(c.head), NextSeq: c.nextSeq, NextHead: hex.EncodeToString(c.next)}
			for _, mac := range []string{"", "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJ+/8="} {
				st.MAC = mac
				want, _ := json.Marshal(st)
				if got := encodeState(nil, quoted, c.seq, c.head, c.nextSeq, c.next, []byte(mac)); !bytes.Equal(got, want) {
					t.Errorf("origin %q, mac %q:\n got %s\nwant %s", origin, mac, got, want)
				}
			}
		}
	}
}

// What write leaves is a full-size file whose MAC verifies with
// encoding/json's reading, and a second write replaces the first whole.
func TestState_WriteReadsBack(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(nil)
	path := filepath.Join(t.TempDir(), "d.db")
	s, err := openState(path, priv)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	head, next := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	for _, c := range []struct {
		origin       string
		seq, nextSeq int64
		head, next   []byte
	}{{"origin <one>", 0, 5, nil, next}, {"o2", 5, 6, next, head}, {"o2", 6, 6, head, head}} {
		if err := s.write(c.origin, c.seq, c.head, c.nextSeq, c.next, true); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(StatePath(path))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != stateSize || b[len(b)-1] != '\n' {
			t.Fatalf("state file is %d bytes ending %q, want %d ending in a newline", len(b), b[len(b)-1:], stateSize)
		}
		st, err := s.read()
		if err != nil {
			t.Fatal(err)
		}
		want := tailState{Origin: c.origin, Seq: c.seq, Head: hex.EncodeToString(c.head), NextSeq: c.nextSeq, NextHead: hex.EncodeToString(c.next), MAC: st.MAC}
		if *st != want || st.MAC != stateMAC(want, s.key) {
			t.Errorf("read back %+v, want %+v with MAC %s", *st, want, stateMAC(want, s.key))
		}
	}
	if n := testing.AllocsPerRun(100, func() { s.write("o2", 6, head, 7, next, false) }); n != 0 {
		t.Errorf("write allocates %v times, want 0", n)
	}
	_, other, _ := ed25519.GenerateKey(nil)
	if _, err := parseState(bytes.NewReader(must(os.ReadFile(StatePath(path)))), "x", stateKey(other)); err == nil {
		t.Error("the state verifies under another key")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
