package decisionlog

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// KindCheckpoint rows sign the head of the chain.
const KindCheckpoint Kind = "checkpoint"

// Checkpoint is the body of a checkpoint row: a signature over the hash of
// the row just before it. It proves, to anyone with the public key, that
// the log held exactly rows 1…Seq at signing, so that a later deletion of
// the tail, or a rewrite of the whole chain without the key, shows.
type Checkpoint struct {
	Seq       int64  `json:"checkpoint_seq"` // the last row covered
	HeadHash  string `json:"head_hash"`      // hex hash of row Seq
	Origin    string `json:"log_origin"`     // the log's origin id (not "origin": shipped rows carry that)
	KeyID     string `json:"key_id"`
	Signature string `json:"signature"` // base64 Ed25519 over SignedBytes
}

// SignedBytes are what the signature covers. The prefix keeps a checkpoint
// signature from being valid as any other signed message.
func (c *Checkpoint) SignedBytes() []byte {
	return []byte("agentpdp checkpoint v1\n" + c.Origin + "\n" + strconv.FormatInt(c.Seq, 10) + "\n" + c.HeadHash + "\n")
}

func newCheckpoint(key ed25519.PrivateKey, origin string, seq int64, head []byte) *Checkpoint {
	c := &Checkpoint{Seq: seq, HeadHash: hex.EncodeToString(head), Origin: origin, KeyID: KeyID(key.Public().(ed25519.PublicKey))}
	c.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(key, c.SignedBytes()))
	return c
}

// Verify checks the signature with pub.
func (c *Checkpoint) Verify(pub ed25519.PublicKey) error {
	if c.KeyID != KeyID(pub) {
		return fmt.Errorf("signed by key %s, not by the key given (%s)", c.KeyID, KeyID(pub))
	}
	sig, err := base64.StdEncoding.DecodeString(c.Signature)
	if err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	if !ed25519.Verify(pub, c.SignedBytes(), sig) {
		return errors.New("signature does not verify")
	}
	return nil
}

// ParseCheckpoint reads a checkpoint from JSON: a checkpoint row as query,
// export or a sink wrote it, or just its body.
func ParseCheckpoint(b []byte) (*Checkpoint, error) {
	var c Checkpoint
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if c.Seq <= 0 || c.HeadHash == "" || c.Signature == "" {
		return nil, errors.New("checkpoint: want checkpoint_seq, head_hash and signature")
	}
	return &c, nil
}
