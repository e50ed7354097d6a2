package decisionlog

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Checkpoint is the body of a checkpoint row. Its Note is a C2SP checkpoint
// (https://c2sp.org/tlog-checkpoint), a signed note
// (golang.org/x/mod/sumdb/note, Ed25519) whose text is
//
//	<origin>\n<tree size>\n<base64 RFC 6962 root hash>\n
//
// over the Merkle tree whose leaves are rows 1…Seq in seq order, each leaf
// being the row's 32-byte chain hash (leaf hash SHA-256(0x00 || hash)). The
// row just before the checkpoint row is the last leaf, so the note also
// commits to the head of the hash chain; HeadHash repeats that row's hash so
// that a log pruned up to this checkpoint can continue its chain from it.
// The note's key name is the origin.
type Checkpoint struct {
	Seq      int64  `json:"checkpoint_seq"` // the tree size: the last row covered
	HeadHash string `json:"head_hash"`      // hex hash of row Seq
	Origin   string `json:"log_origin"`     // not "origin": shipped rows carry that
	KeyID    string `json:"key_id"`
	Note     string `json:"note"` // the signed C2SP checkpoint
}

// CheckpointText is the body of a C2SP checkpoint.
func CheckpointText(origin string, size int64, root tlog.Hash) string {
	return origin + "\n" + strconv.FormatInt(size, 10) + "\n" + base64.StdEncoding.EncodeToString(root[:]) + "\n"
}

// ParseCheckpointText reads the body of a C2SP checkpoint: origin, tree
// size and root hash, ignoring extension lines.
func ParseCheckpointText(text string) (origin string, size int64, root tlog.Hash, err error) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 || lines[0] == "" {
		return "", 0, root, errors.New("checkpoint: want origin, tree size and root hash lines")
	}
	size, err = strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return "", 0, root, fmt.Errorf("checkpoint: tree size %q is not a decimal number", lines[1])
	}
	h, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(h) != len(root) {
		return "", 0, root, fmt.Errorf("checkpoint: root hash %q is not 32 bytes of base64", lines[2])
	}
	copy(root[:], h)
	return lines[0], size, root, nil
}

// Verifier checks notes signed by pub under the key name origin, the
// origin of the log (see [Checkpoint]).
func Verifier(origin string, pub ed25519.PublicKey) (note.Verifier, error) {
	vkey, err := note.NewEd25519VerifierKey(origin, pub)
	if err != nil {
		return nil, fmt.Errorf("verifier for origin %q: %w", origin, err)
	}
	return note.NewVerifier(vkey)
}

// signer signs notes with an Ed25519 key under the key name origin.
type signer struct {
	note.Verifier
	key ed25519.PrivateKey
}

func newSigner(origin string, key ed25519.PrivateKey) (*signer, error) {
	v, err := Verifier(origin, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	return &signer{Verifier: v, key: key}, nil
}

func (s *signer) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.key, msg), nil }

// newCheckpoint signs the tree of size seq with root, whose last leaf is head.
func newCheckpoint(s *signer, origin string, seq int64, head []byte, root tlog.Hash) (*Checkpoint, error) {
	signed, err := note.Sign(&note.Note{Text: CheckpointText(origin, seq, root)}, s)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	return &Checkpoint{Seq: seq, HeadHash: hex.EncodeToString(head), Origin: origin,
		KeyID: KeyID(s.key.Public().(ed25519.PublicKey)), Note: string(signed)}, nil
}

// Open checks the note's signature with pub and that its text agrees with
// the row's fields, and returns the signed root hash.
func (c *Checkpoint) Open(pub ed25519.PublicKey) (tlog.Hash, error) {
	var root tlog.Hash
	if c.KeyID != "" && c.KeyID != KeyID(pub) { // a bare note names no key id
		return root, fmt.Errorf("signed by key %s, not by the key given (%s)", c.KeyID, KeyID(pub))
	}
	v, err := Verifier(c.Origin, pub)
	if err != nil {
		return root, err
	}
	n, err := note.Open([]byte(c.Note), note.VerifierList(v))
	if err != nil {
		return root, fmt.Errorf("signature does not verify: %w", err)
	}
	return c.checkText(n.Text)
}

// Root is the root hash the note states, without checking its signature.
func (c *Checkpoint) Root() (tlog.Hash, error) {
	text, _, ok := strings.Cut(c.Note, "\n\n")
	if !ok {
		return tlog.Hash{}, errors.New("checkpoint note has no signature block")
	}
	return c.checkText(text + "\n")
}

func (c *Checkpoint) checkText(text string) (tlog.Hash, error) {
	origin, size, root, err := ParseCheckpointText(text)
	if err != nil {
		return root, err
	}
	if origin != c.Origin || size != c.Seq {
		return root, fmt.Errorf("checkpoint note says origin %q size %d, the row says %q size %d", origin, size, c.Origin, c.Seq)
	}
	return root, nil
}

// Verify checks the signature with pub.
func (c *Checkpoint) Verify(pub ed25519.PublicKey) error {
	_, err := c.Open(pub)
	return err
}

// ParseCheckpoint reads a checkpoint: a checkpoint row as query, export or
// a sink wrote it, just its body, or a bare signed note (C2SP checkpoint),
// which has no head hash.
func ParseCheckpoint(b []byte) (*Checkpoint, error) {
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] != '{' {
		n, err := note.Open(b, note.VerifierList()) // parses; signatures are checked by Open/Verify
		var unknown *note.UnverifiedNoteError
		if err != nil && !errors.As(err, &unknown) {
			return nil, fmt.Errorf("checkpoint note: %w", err)
		}
		if unknown != nil {
			n = unknown.Note
		}
		origin, size, _, err := ParseCheckpointText(n.Text)
		if err != nil {
			return nil, err
		}
		return &Checkpoint{Seq: size, Origin: origin, Note: string(b)}, nil
	}
	var c Checkpoint
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if c.Seq <= 0 || c.Note == "" {
		return nil, errors.New("checkpoint: want checkpoint_seq and note")
	}
	if _, err := c.Root(); err != nil {
		return nil, err
	}
	return &c, nil
}
