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
)

// ChainError is the first row at which the log does not hold: a row changed,
// removed, inserted or reordered since it was written, a checkpoint that
// does not verify, or a tail cut off after a trusted checkpoint.
type ChainError struct {
	Seq     int64  // the first row that fails
	Problem string // what is wrong with it
}

func (e *ChainError) Error() string { return fmt.Sprintf("seq %d: %s", e.Seq, e.Problem) }

// VerifyOptions say what to check beyond the hash chain itself.
type VerifyOptions struct {
	// PublicKey checks every checkpoint's signature. Without it, signatures
	// are not checked and the report says so.
	PublicKey ed25519.PublicKey
	// Trusted is a checkpoint kept outside the log (shipped upstream, say).
	// The log must still hold the rows it signed, unchanged: this catches a
	// tail cut off after it, and a chain rewritten from the start.
	Trusted *Checkpoint
	// Progress, if set, is called now and then with the seq reached and
	// the last seq.
	Progress func(seq, last int64)
}

// VerifyReport is what a successful Verify found.
type VerifyReport struct {
	Origin            string `json:"origin"`
	Rows              int64  `json:"rows"`
	LastSeq           int64  `json:"last_seq"`
	Checkpoints       int64  `json:"checkpoints"`
	SignaturesChecked bool   `json:"signatures_checked"`
	LastSigned        int64  `json:"last_signed_seq"` // the last row a checkpoint covers
	Unsigned          int64  `json:"unsigned_rows"`   // rows after the last checkpoint row: their removal shows only against a trusted checkpoint
	TrustedSeq        int64  `json:"trusted_seq,omitempty"`
	// Anchor is the first row kept after pruning, 0 if the log starts at
	// seq 1: a checkpoint whose signed head hash the chain continues from.
	Anchor int64 `json:"anchor_seq,omitempty"`
}

// Verify recomputes every row's hash from the start of the log, one row in
// memory at a time, checks each checkpoint against the chain and, with a
// key, its signature, and checks the trusted checkpoint if given. The first
// failure is a *ChainError naming its row.
func (r *Reader) Verify(ctx context.Context, opts VerifyOptions) (*VerifyReport, error) {
	rep := &VerifyReport{SignaturesChecked: opts.PublicKey != nil}
	if err := r.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'origin'`).Scan(&rep.Origin); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("verify: read origin: %w", err)
	}
	last, err := r.LastSeq(ctx)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	rep.LastSeq = last
	if t := opts.Trusted; t != nil {
		if opts.PublicKey == nil {
			return nil, errors.New("verify: a trusted checkpoint needs the public key to check it")
		}
		if err := t.Verify(opts.PublicKey); err != nil {
			return nil, fmt.Errorf("verify: trusted checkpoint: %w", err)
		}
		if t.Origin != rep.Origin {
			return nil, fmt.Errorf("verify: the trusted checkpoint is of log %s, not this log (%s)", t.Origin, rep.Origin)
		}
		rep.TrustedSeq = t.Seq
	}

	var prev []byte
	var n int64
	if err := r.anchor(ctx, rep, &prev, &n); err != nil {
		return nil, err
	}
	err = r.Scan(ctx, 1, func(e *Entry) error {
		n++
		switch {
		case e.Seq > n:
			return &ChainError{Seq: n, Problem: fmt.Sprintf("missing: the next row is seq %d", e.Seq)}
		case e.Seq < n:
			return &ChainError{Seq: e.Seq, Problem: "out of order"}
		case !bytes.Equal(ChainHash(prev, e), e.Hash):
			return &ChainError{Seq: e.Seq, Problem: "hash does not match its content and the previous row: changed, inserted or reordered"}
		}
		if e.Kind == KindCheckpoint {
			if err := checkCheckpoint(e, prev, rep, opts.PublicKey); err != nil {
				return err
			}
		}
		if t := opts.Trusted; t != nil && e.Seq == t.Seq && hex.EncodeToString(e.Hash) != t.HeadHash {
			return &ChainError{Seq: e.Seq, Problem: "does not match the trusted checkpoint: the log was rewritten"}
		}
		prev = e.Hash
		if opts.Progress != nil && n%10000 == 0 {
			opts.Progress(n, rep.LastSeq)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	rep.Rows = n - max(rep.Anchor-1, 0)
	if opts.Progress != nil {
		opts.Progress(n, rep.LastSeq)
	}
	if t := opts.Trusted; t != nil && t.Seq < rep.Anchor {
		rep.TrustedSeq = 0 // pruned since: nothing left to check it against
	}
	if t := opts.Trusted; t != nil && n < t.Seq {
		return nil, &ChainError{Seq: n + 1, Problem: fmt.Sprintf("truncated: the trusted checkpoint covers seq %d but the log ends at %d", t.Seq, n)}
	}
	rep.Unsigned = rep.Rows
	if rep.Checkpoints > 0 {
		rep.Unsigned = n - (rep.LastSigned + 1) // the rows after the last checkpoint row
	}
	return rep, nil
}

// checkCheckpoint checks a checkpoint row against the chain before it: it
// must sign the hash of the row just before it, in this log, with the key.
func checkCheckpoint(e *Entry, prev []byte, rep *VerifyReport, pub ed25519.PublicKey) error {
	var c Checkpoint
	if err := json.Unmarshal(e.Body, &c); err != nil {
		return &ChainError{Seq: e.Seq, Problem: "checkpoint: " + err.Error()}
	}
	switch {
	case c.Seq != e.Seq-1 || c.HeadHash != hex.EncodeToString(prev):
		return &ChainError{Seq: e.Seq, Problem: fmt.Sprintf("checkpoint claims seq %d but follows seq %d with another hash", c.Seq, e.Seq-1)}
	case c.Origin != rep.Origin:
		return &ChainError{Seq: e.Seq, Problem: fmt.Sprintf("checkpoint is of log %s, not %s", c.Origin, rep.Origin)}
	}
	if pub != nil {
		if err := c.Verify(pub); err != nil {
			return &ChainError{Seq: e.Seq, Problem: "checkpoint " + err.Error()}
		}
	}
	rep.Checkpoints++
	rep.LastSigned = c.Seq
	return nil
}

// anchor sets where the chain starts: seq 1 with no previous hash, or, after
// pruning, the first row kept, which must be a checkpoint; the chain then
// continues from the head hash it signs.
func (r *Reader) anchor(ctx context.Context, rep *VerifyReport, prev *[]byte, n *int64) error {
	var first int64
	var kind string
	var body string
	err := r.db.QueryRowContext(ctx, `SELECT seq, kind, body FROM log ORDER BY seq LIMIT 1`).Scan(&first, &kind, &body)
	if errors.Is(err, sql.ErrNoRows) || first == 1 {
		return nil
	}
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if kind != string(KindCheckpoint) {
		return &ChainError{Seq: 1, Problem: fmt.Sprintf("rows 1 to %d are missing, and seq %d is not a checkpoint a pruned log would start at", first-1, first)}
	}
	var c Checkpoint
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		return &ChainError{Seq: first, Problem: "checkpoint: " + err.Error()}
	}
	head, err := hex.DecodeString(c.HeadHash)
	if err != nil {
		return &ChainError{Seq: first, Problem: "checkpoint head hash: " + err.Error()}
	}
	*prev, *n = head, first-1
	rep.Anchor = first
	return nil
}
