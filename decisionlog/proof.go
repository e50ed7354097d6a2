package decisionlog

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/agentpdp/agentpdp/internal/plural"
)

// The proof formats (docs/proofs.md describes them for auditors).
const (
	InclusionFormat   = "agentpdp-inclusion-proof/v1"
	ConsistencyFormat = "agentpdp-consistency-proof/v1"
)

// InclusionProof shows, to anyone with the log's public key and nothing
// else, that one row is in the log: the row's exact bytes and the hash of
// the row before it give its chain hash (the leaf), the RFC 6962 inclusion
// proof takes the leaf to a root, and the checkpoint signs that root.
type InclusionProof struct {
	Format     string      `json:"format"`
	Origin     string      `json:"origin"`
	Row        ProofRow    `json:"row"`
	LeafIndex  int64       `json:"leaf_index"` // seq - 1
	TreeSize   int64       `json:"tree_size"`
	Proof      []tlog.Hash `json:"inclusion_proof"` // base64 hashes, leaf to root
	Checkpoint string      `json:"checkpoint"`      // the C2SP signed note
}

// ProofRow is a row as its hash covers it.
type ProofRow struct {
	Seq          int64           `json:"seq"`
	Kind         Kind            `json:"kind"`
	TimeUnixNano int64           `json:"time_unix_nano"`
	Time         time.Time       `json:"time"` // the same instant, for people; not hashed
	Body         string          `json:"body"` // exactly as stored and hashed
	PrevHash     string          `json:"prev_hash"`
	Hash         string          `json:"hash"`
	Content      json.RawMessage `json:"content,omitempty"` // Body again as JSON, for people; not hashed
}

// ConsistencyProof shows that the tree of OldSize rows is a prefix of the
// tree of NewSize rows: nothing the old checkpoint signed was changed or
// removed by the time of the new one.
type ConsistencyProof struct {
	Format        string      `json:"format"`
	Origin        string      `json:"origin"`
	OldSize       int64       `json:"old_size"`
	OldRoot       tlog.Hash   `json:"old_root"`
	OldCheckpoint string      `json:"old_checkpoint,omitempty"` // if the log still holds it
	NewSize       int64       `json:"new_size"`
	NewCheckpoint string      `json:"new_checkpoint"`
	Proof         []tlog.Hash `json:"consistency_proof"`
}

// checkpointCovering is the newest checkpoint row covering row seq (its
// tree holds at least seq rows) or, if exact, the checkpoint of the tree of
// exactly seq rows, which is the row at seq+1 by construction. Both are
// lookups in an index, not scans: a million-row log answers at once.
func (r *Reader) checkpointCovering(ctx context.Context, seq int64, exact bool) (*Checkpoint, error) {
	q := `SELECT body FROM log WHERE kind = 'checkpoint' AND seq > ? ORDER BY seq DESC LIMIT 1`
	if exact {
		q = `SELECT body FROM log WHERE kind = 'checkpoint' AND seq = ? + 1`
	}
	var body string
	err := r.db.QueryRowContext(ctx, q, seq).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var c Checkpoint
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if c.Seq < seq || exact && c.Seq != seq {
		return nil, fmt.Errorf("the checkpoint row after seq %d signs tree size %d", seq, c.Seq)
	}
	return &c, nil
}

// nearestCheckpoints says which tree sizes the checkpoints just before and
// after size sign, for a message: a checkpoint of size n is row n+1.
func (r *Reader) nearestCheckpoints(ctx context.Context, size int64) string {
	var sizes []string
	for _, q := range []string{
		`SELECT seq - 1 FROM log WHERE kind = 'checkpoint' AND seq <= ? + 1 ORDER BY seq DESC LIMIT 1`,
		`SELECT seq - 1 FROM log WHERE kind = 'checkpoint' AND seq > ? + 1 ORDER BY seq LIMIT 1`,
	} {
		var n int64
		if err := r.db.QueryRowContext(ctx, q, size).Scan(&n); err == nil {
			sizes = append(sizes, strconv.FormatInt(n, 10))
		}
	}
	switch len(sizes) {
	case 0:
		return ": the log has no checkpoint yet"
	case 1:
		return fmt.Sprintf("; the nearest checkpoint signs %s (log export --kind checkpoint lists them all)", sizes[0])
	}
	return fmt.Sprintf("; the nearest checkpoints sign %s and %s (log export --kind checkpoint lists them all)", sizes[0], sizes[1])
}

// ProveDecision proves the decision row with this id (see ProveRow).
func (r *Reader) ProveDecision(ctx context.Context, id string) (*InclusionProof, error) {
	e, err := r.Decision(ctx, id)
	if err != nil {
		return nil, err
	}
	return r.ProveRow(ctx, e.Seq)
}

// ProveRow proves row seq against the newest checkpoint in the log. A row
// no checkpoint covers yet cannot be proven: the daemon signs one every
// checkpoints.every_rows rows and every checkpoints.every.
func (r *Reader) ProveRow(ctx context.Context, seq int64) (*InclusionProof, error) {
	row := r.db.QueryRowContext(ctx, `SELECT seq, kind, time, body, hash FROM log WHERE seq = ?`, seq)
	e, err := scanEntry(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("prove seq %d: %w", seq, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("prove seq %d: %w", seq, err)
	}
	c, err := r.checkpointCovering(ctx, seq, false)
	if err != nil {
		return nil, fmt.Errorf("prove seq %d: %w", seq, err)
	}
	if c == nil {
		return nil, fmt.Errorf("prove seq %d: no signed checkpoint covers it yet (the next comes within checkpoints.every): try again shortly", seq)
	}
	prev, err := r.prevHash(ctx, seq)
	if err != nil {
		return nil, fmt.Errorf("prove seq %d: %w", seq, err)
	}
	if !bytes.Equal(ChainHash(prev, e), e.Hash) {
		return nil, fmt.Errorf("prove seq %d: the row does not match its hash: run agentpdp log verify", seq)
	}
	p, err := tlog.ProveRecord(c.Seq, seq-1, &hashReader{ctx: ctx, q: r.db})
	if err != nil {
		return nil, fmt.Errorf("prove seq %d: %w", seq, err)
	}
	out := &InclusionProof{Format: InclusionFormat, Origin: c.Origin, LeafIndex: seq - 1, TreeSize: c.Seq, Proof: p, Checkpoint: c.Note,
		Row: ProofRow{Seq: e.Seq, Kind: e.Kind, TimeUnixNano: e.Time.UnixNano(), Time: e.Time, Body: string(e.Body),
			PrevHash: hex.EncodeToString(prev), Hash: hex.EncodeToString(e.Hash)}}
	if json.Valid(e.Body) {
		out.Row.Content = e.Body
	}
	return out, nil
}

// ProveConsistency proves the tree of oldSize rows a prefix of the tree of
// newSize rows, which a checkpoint in the log must sign.
func (r *Reader) ProveConsistency(ctx context.Context, oldSize, newSize int64) (*ConsistencyProof, error) {
	if oldSize <= 0 || oldSize > newSize {
		return nil, fmt.Errorf("prove consistency: want 0 < OLD ≤ NEW, got %d and %d", oldSize, newSize)
	}
	nc, err := r.checkpointCovering(ctx, newSize, true)
	if err != nil {
		return nil, fmt.Errorf("prove consistency: %w", err)
	}
	if nc == nil {
		return nil, fmt.Errorf("prove consistency: no checkpoint in the log signs tree size %d%s", newSize, r.nearestCheckpoints(ctx, newSize))
	}
	hr := &hashReader{ctx: ctx, q: r.db}
	out := &ConsistencyProof{Format: ConsistencyFormat, Origin: nc.Origin, OldSize: oldSize, NewSize: newSize, NewCheckpoint: nc.Note}
	if out.OldRoot, err = tlog.TreeHash(oldSize, hr); err != nil {
		return nil, fmt.Errorf("prove consistency: %w", err)
	}
	if oc, err := r.checkpointCovering(ctx, oldSize, true); err == nil && oc != nil {
		out.OldCheckpoint = oc.Note
	}
	if out.Proof, err = tlog.ProveTree(newSize, oldSize, hr); err != nil {
		return nil, fmt.Errorf("prove consistency: %w", err)
	}
	return out, nil
}

// ProofResult says what a proof file proved.
type ProofResult struct {
	Format   string `json:"format"`
	Origin   string `json:"origin"`
	TreeSize int64  `json:"tree_size"`
	KeyID    string `json:"key_id"`
	// Inclusion proofs:
	Seq        int64  `json:"seq,omitempty"`
	Kind       Kind   `json:"kind,omitempty"`
	DecisionID string `json:"decision_id,omitempty"`
	// Consistency proofs:
	OldSize       int64 `json:"old_size,omitempty"`
	OldCheckpoint bool  `json:"old_checkpoint_signed,omitempty"` // the file held the old checkpoint and it verified
}

// openNote checks a checkpoint note's signature and origin.
func openNote(signed, origin string, pub ed25519.PublicKey) (int64, tlog.Hash, error) {
	v, err := Verifier(origin, pub)
	if err != nil {
		return 0, tlog.Hash{}, err
	}
	n, err := note.Open([]byte(signed), note.VerifierList(v))
	if err != nil {
		return 0, tlog.Hash{}, fmt.Errorf("checkpoint signature (origin %s, key %s): %w", origin, KeyID(pub), err)
	}
	o, size, root, err := ParseCheckpointText(n.Text)
	if err != nil {
		return 0, root, err
	}
	if o != origin {
		return 0, root, fmt.Errorf("checkpoint is of log %q, the proof says %q", o, origin)
	}
	return size, root, nil
}

// VerifyProof checks a proof file (either format) with the log's public
// key alone: signatures, row hash and Merkle proof.
func VerifyProof(b []byte, pub ed25519.PublicKey) (*ProofResult, error) {
	var head struct {
		Format string `json:"format"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("proof: %w", err)
	}
	switch head.Format {
	case InclusionFormat:
		var p InclusionProof
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("proof: %w", err)
		}
		return p.Verify(pub)
	case ConsistencyFormat:
		var p ConsistencyProof
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("proof: %w", err)
		}
		return p.Verify(pub)
	}
	return nil, fmt.Errorf("proof: format %q is not %s or %s", head.Format, InclusionFormat, ConsistencyFormat)
}

// Verify checks the proof with the log's public key.
func (p *InclusionProof) Verify(pub ed25519.PublicKey) (*ProofResult, error) {
	size, root, err := openNote(p.Checkpoint, p.Origin, pub)
	if err != nil {
		return nil, fmt.Errorf("inclusion proof: %w", err)
	}
	if size != p.TreeSize {
		return nil, fmt.Errorf("inclusion proof: the checkpoint signs tree size %d, the proof says %d", size, p.TreeSize)
	}
	if p.LeafIndex != p.Row.Seq-1 {
		return nil, fmt.Errorf("inclusion proof: leaf index %d is not seq %d - 1", p.LeafIndex, p.Row.Seq)
	}
	prev, err := hex.DecodeString(p.Row.PrevHash)
	if err != nil || (len(prev) != 32 && !(p.Row.Seq == 1 && len(prev) == 0)) {
		return nil, errors.New("inclusion proof: prev_hash is not a hex SHA-256")
	}
	e := &Entry{Seq: p.Row.Seq, Kind: p.Row.Kind, Time: time.Unix(0, p.Row.TimeUnixNano), Body: []byte(p.Row.Body)}
	h := ChainHash(prev, e)
	if hex.EncodeToString(h) != p.Row.Hash {
		return nil, fmt.Errorf("inclusion proof: the row's content does not hash to %s", p.Row.Hash)
	}
	if err := tlog.CheckRecord(p.Proof, p.TreeSize, root, p.LeafIndex, tlog.RecordHash(h)); err != nil {
		return nil, fmt.Errorf("inclusion proof: seq %d is not in the tree the checkpoint signs: %w", p.Row.Seq, err)
	}
	res := &ProofResult{Format: p.Format, Origin: p.Origin, TreeSize: size, KeyID: KeyID(pub), Seq: p.Row.Seq, Kind: p.Row.Kind}
	var body struct {
		DecisionID string `json:"decision_id"`
	}
	if json.Unmarshal(e.Body, &body) == nil {
		res.DecisionID = body.DecisionID
	}
	return res, nil
}

// Verify checks the proof with the log's public key.
func (p *ConsistencyProof) Verify(pub ed25519.PublicKey) (*ProofResult, error) {
	size, root, err := openNote(p.NewCheckpoint, p.Origin, pub)
	if err != nil {
		return nil, fmt.Errorf("consistency proof: new checkpoint: %w", err)
	}
	if size != p.NewSize {
		return nil, fmt.Errorf("consistency proof: the new checkpoint signs tree size %d, the proof says %d", size, p.NewSize)
	}
	res := &ProofResult{Format: p.Format, Origin: p.Origin, TreeSize: size, KeyID: KeyID(pub), OldSize: p.OldSize}
	if p.OldCheckpoint != "" {
		osize, oroot, err := openNote(p.OldCheckpoint, p.Origin, pub)
		if err != nil {
			return nil, fmt.Errorf("consistency proof: old checkpoint: %w", err)
		}
		if osize != p.OldSize || oroot != p.OldRoot {
			return nil, fmt.Errorf("consistency proof: the old checkpoint signs size %d root %s, the proof says size %d root %s", osize, oroot, p.OldSize, p.OldRoot)
		}
		res.OldCheckpoint = true
	}
	if err := tlog.CheckTree(p.Proof, p.NewSize, root, p.OldSize, p.OldRoot); err != nil {
		return nil, fmt.Errorf("consistency proof: the tree of %s is not a prefix of the signed tree of %d: %w", plural.Count(p.OldSize, "row", "rows"), p.NewSize, err)
	}
	return res, nil
}
