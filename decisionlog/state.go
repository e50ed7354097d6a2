package decisionlog

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strconv"
)

// StatePath is the writer's tail state file beside the log.
func StatePath(path string) string { return path + ".state" }

// IntegrityRecord is the body of an integrity row.
type IntegrityRecord struct {
	Event    string   `json:"event"` // "triggers_restored" or "tail_accepted"
	Triggers []string `json:"triggers,omitempty"`
	// For tail_accepted: where this writer last left the log, and what it
	// found there instead.
	Problem      string `json:"problem,omitempty"`
	ExpectedSeq  int64  `json:"expected_seq,omitempty"`
	ExpectedHead string `json:"expected_head,omitempty"`
	FoundSeq     int64  `json:"found_seq,omitempty"`
	FoundHead    string `json:"found_head,omitempty"`
}

// tailState is what the writer knows it wrote: the head before its commit
// in flight and the head that commit makes. It is written before every
// COMMIT (so that after a crash the log ends at one or the other) and
// fsynced with every checkpoint and at close. An HMAC under a key derived
// from the signing key authenticates it: whoever can write the database
// but not read the key cannot make the writer adopt rows it never wrote.
type tailState struct {
	Origin   string `json:"origin"`
	Seq      int64  `json:"seq"`
	Head     string `json:"head"`
	NextSeq  int64  `json:"next_seq"`
	NextHead string `json:"next_head"`
	MAC      string `json:"mac,omitempty"`
}

// stateSize is the fixed size the state is padded to, so that every write
// overwrites the whole of the last one in place.
const stateSize = 512

type stateFile struct {
	f   *os.File
	key []byte

	// Reused by every write, which happens once per commit.
	mac    hash.Hash // HMAC-SHA256 under key
	buf    []byte    // the JSON, then the padded file image
	sum    []byte
	origin string // the origin encodeState last quoted,
	quoted []byte // and its JSON string
}

func openState(path string, signing ed25519.PrivateKey) (*stateFile, error) {
	f, err := os.OpenFile(StatePath(path), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("tail state: %w", err)
	}
	key := stateKey(signing)
	return &stateFile{f: f, key: key, mac: hmac.New(sha256.New, key), buf: make([]byte, 0, stateSize)}, nil
}

// stateKey is the HMAC key of the tail state, derived from the signing key.
func stateKey(signing ed25519.PrivateKey) []byte {
	k := sha256.Sum256(append([]byte("agentpdp tail state v1\x00"), signing.Seed()...))
	return k[:]
}

func stateMAC(st tailState, key []byte) string {
	st.MAC = ""
	b, _ := json.Marshal(st)
	m := hmac.New(sha256.New, key)
	m.Write(b)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// read returns the state, or nil if the file is empty (a new log, or one
// from before the state file existed).
func (s *stateFile) read() (*tailState, error) {
	return parseState(io.NewSectionReader(s.f, 0, 1<<16), s.f.Name(), s.key)
}

// parseState reads a tail state from rd (named name in errors), or nil if
// it is empty. With a key its MAC must verify; a nil key skips that check
// (a reader without the signing key).
func parseState(rd io.Reader, name string, key []byte) (*tailState, error) {
	b, err := io.ReadAll(io.LimitReader(rd, 1<<16))
	if err != nil {
		return nil, fmt.Errorf("tail state: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, nil
	}
	var st tailState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("tail state %s: %w", name, err)
	}
	if key != nil && !hmac.Equal([]byte(st.MAC), []byte(stateMAC(st, key))) {
		return nil, fmt.Errorf("tail state %s: its MAC does not verify with this signing key: changed by someone else, or written with another key", name)
	}
	return &st, nil
}

// write replaces the state with origin's: the head before the commit in
// flight (seq, head) and the one it makes (nextSeq, nextHead), with sync an
// fsync after. It runs before every COMMIT, so it allocates nothing: the
// JSON is what json.Marshal makes of a tailState (stateMAC and readers
// check it with encoding/json), written by hand into a reused buffer.
func (s *stateFile) write(origin string, seq int64, head []byte, nextSeq int64, nextHead []byte, sync bool) error {
	if origin != s.origin || s.quoted == nil {
		q, err := json.Marshal(origin)
		if err != nil {
			return fmt.Errorf("tail state: %w", err)
		}
		s.origin, s.quoted = origin, q
	}
	b := encodeState(s.buf[:0], s.quoted, seq, head, nextSeq, nextHead, nil)
	s.mac.Reset()
	s.mac.Write(b)
	s.sum = s.mac.Sum(s.sum[:0])
	var mac [44]byte // base64 of 32 bytes
	base64.StdEncoding.Encode(mac[:], s.sum)
	b = encodeState(b[:0], s.quoted, seq, head, nextSeq, nextHead, mac[:])
	if len(b) >= stateSize {
		return errors.New("tail state: too long") // an origin of hundreds of bytes
	}
	for len(b) < stateSize-1 {
		b = append(b, ' ')
	}
	b = append(b, '\n')
	s.buf = b[:0]
	if _, err := s.f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("tail state: %w", err)
	}
	if sync {
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("tail state: %w", err)
		}
	}
	return nil
}

func (s *stateFile) close() error { return s.f.Close() }

// encodeState appends to b the JSON encoding/json makes of
// tailState{Origin, Seq, Head, NextSeq, NextHead, MAC} (MAC omitted when
// empty), origin given already quoted and the heads as raw bytes.
func encodeState(b, origin []byte, seq int64, head []byte, nextSeq int64, nextHead []byte, mac []byte) []byte {
	b = append(b, `{"origin":`...)
	b = append(b, origin...)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"head":"`...)
	b = hex.AppendEncode(b, head)
	b = append(b, `","next_seq":`...)
	b = strconv.AppendInt(b, nextSeq, 10)
	b = append(b, `,"next_head":"`...)
	b = hex.AppendEncode(b, nextHead)
	b = append(b, '"')
	if len(mac) > 0 {
		b = append(b, `,"mac":"`...)
		b = append(b, mac...) // base64: no character JSON escapes
		b = append(b, '"')
	}
	return append(b, '}')
}

func hexHead(h []byte) string { return hex.EncodeToString(h) }
