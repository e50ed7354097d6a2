package decisionlog_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/agentpdp/agentpdp/decisionlog"
)

// FuzzEntryCodec: a row's body either is rejected or is written as one flat
// JSON object whose seq, kind and hash are the row's, and its hash covers
// exactly its canonical bytes. Checkpoint parsing never panics.
func FuzzEntryCodec(f *testing.F) {
	f.Add(int64(1), "decision", int64(1764000000000000000), []byte(`{"decision_id":"d","decision":"allow"}`))
	f.Add(int64(7), "checkpoint", int64(0), []byte(`{"checkpoint_seq":6,"head_hash":"ab","origin":"o","key_id":"k","signature":"c2ln"}`))
	f.Add(int64(2), "outcome", int64(-5), []byte(`{}`))
	f.Add(int64(3), "x", int64(9), []byte(`[1,2]`))
	f.Add(int64(4), "decision", int64(9), []byte(` {"a": {"b": [1, "\u2028"]}} `))
	f.Fuzz(func(t *testing.T, seq int64, kind string, ns int64, body []byte) {
		e := &decisionlog.Entry{Seq: seq, Kind: decisionlog.Kind(kind), Time: time.Unix(0, ns), Body: body, Hash: []byte{1, 2}}
		b, err := e.MarshalJSON()
		if err == nil {
			var m map[string]json.RawMessage
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("a marshalled row is not one JSON object: %v\n%s", err, b)
			}
			var got struct {
				Seq  int64
				Kind string
				Hash string
			}
			json.Unmarshal(b, &got)
			// A kind that is not UTF-8 cannot survive JSON as it is; the
			// engine's kinds are constants that are.
			if got.Seq != seq || got.Hash != "0102" || (utf8.ValidString(kind) && got.Kind != kind) {
				t.Fatalf("row fields: %+v for seq %d kind %q", got, seq, kind)
			}
		}
		c := e.CanonicalBytes()
		if !bytes.HasSuffix(c, body) || len(c) != 16+len(kind)+1+len(body) {
			t.Fatalf("canonical bytes do not frame the body")
		}
		if h := decisionlog.ChainHash(nil, e); len(h) != 32 {
			t.Fatal("hash length")
		}
		decisionlog.ParseCheckpoint(body)
	})
}
