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
	"io/fs"
	"os"
	"strings"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/tlog"
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
	// StatePath, if set, is the writer's tail state file (StatePath of the
	// log). The log must reach the seq it records, with the head hash it
	// records there: a tail cut off, signed checkpoints included, fails. A
	// missing or empty file is reported (TailState "missing"), not a failure:
	// a reader on another host may have only the database.
	StatePath string
	// StateKey, if set, is the log's signing key: the tail state's MAC must
	// verify with it. Without it the state is read but not authenticated.
	StateKey ed25519.PrivateKey
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
	// Unguarded names the append-only triggers missing or altered: the
	// rows verify, but nothing stops an update or delete until the writer
	// restores them at its next start.
	Unguarded []string `json:"unguarded,omitempty"`
	// TailState is what became of the writer's tail state file (with
	// VerifyOptions.StatePath): "authenticated", "unauthenticated" (read
	// without the signing key) or "missing"; TailStateSeq is the seq it
	// records, which the log reaches.
	TailState    string `json:"tail_state,omitempty"`
	TailStateSeq int64  `json:"tail_state_seq,omitempty"`
}

// TailStateError says the writer's tail state file cannot be trusted: it
// does not parse, its MAC does not verify with the signing key, or it is of
// another log.
type TailStateError struct {
	Problem string
}

func (e *TailStateError) Error() string { return e.Problem }

// readTailState reads the tail state for Verify, before the log, so that a
// writer committing meanwhile only moves the log past it.
func readTailState(path string, signing ed25519.PrivateKey, rep *VerifyReport) (*tailState, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		rep.TailState = "missing"
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	defer f.Close()
	var key []byte
	rep.TailState = "unauthenticated"
	if signing != nil {
		key, rep.TailState = stateKey(signing), "authenticated"
	}
	st, err := parseState(f, path, key)
	if err != nil {
		return nil, &TailStateError{Problem: err.Error()}
	}
	if st == nil {
		rep.TailState = "missing"
		return nil, nil
	}
	rep.TailStateSeq = st.Seq
	return st, nil
}

// Verify recomputes every row's hash from the start of the log, one row in
// memory at a time, and the Merkle tree over the rows; checks each
// checkpoint against both and, with a key, its signature; checks that rows
// missing from the start are exactly what a signed prune record says;
// checks that every row's columns hold what its body does (checkColumns);
// and checks the trusted checkpoint if given, by a consistency proof when
// the log was pruned past it. The first failure is a *ChainError naming
// its row.
func (r *Reader) Verify(ctx context.Context, opts VerifyOptions) (*VerifyReport, error) {
	rep := &VerifyReport{SignaturesChecked: opts.PublicKey != nil}
	var st *tailState
	if opts.StatePath != "" {
		var err error
		if st, err = readTailState(opts.StatePath, opts.StateKey, rep); err != nil {
			return nil, err
		}
	}
	if err := r.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'origin'`).Scan(&rep.Origin); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("verify: read origin: %w", err)
	}
	last, err := r.LastSeq(ctx)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	rep.LastSeq = last
	if st != nil && st.Origin != rep.Origin {
		return nil, &TailStateError{Problem: fmt.Sprintf("tail state %s is of log %s, not this log (%s)", opts.StatePath, st.Origin, rep.Origin)}
	}
	var trustedRoot tlog.Hash
	if t := opts.Trusted; t != nil {
		if opts.PublicKey == nil {
			return nil, errors.New("verify: a trusted checkpoint needs the public key to check it")
		}
		if t.Origin != rep.Origin {
			return nil, fmt.Errorf("verify: the trusted checkpoint is of log %s, not this log (%s)", t.Origin, rep.Origin)
		}
		if trustedRoot, err = t.Open(opts.PublicKey); err != nil {
			return nil, fmt.Errorf("verify: trusted checkpoint: %w", err)
		}
		rep.TrustedSeq = t.Seq
	}

	a, err := r.anchor(ctx, rep, opts.PublicKey)
	if err != nil {
		return nil, err
	}
	prev, n, tree := a.prev, a.anchor-1, a.tree
	if a.anchor == 0 {
		n = 0
	}
	if t := opts.Trusted; t != nil && a.anchor > 0 && t.Seq <= a.anchor-1 {
		// Pruned past the trusted checkpoint: the tree the anchor signs must
		// extend it.
		p, err := tlog.ProveTree(a.anchor-1, t.Seq, &hashReader{ctx: ctx, q: r.db})
		if err == nil {
			err = tlog.CheckTree(p, a.anchor-1, a.root, t.Seq, trustedRoot)
		}
		if err != nil {
			return nil, &ChainError{Seq: t.Seq, Problem: "the trusted checkpoint is not a prefix of the retained log's tree: the log was rewritten (" + err.Error() + ")"}
		}
	}
	err = r.Scan(ctx, max(a.anchor, 1), func(e *Entry) error {
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
			if err := checkCheckpoint(e, prev, tree, rep, opts.PublicKey); err != nil {
				return err
			}
		}
		if t := opts.Trusted; t != nil && e.Seq-1 == t.Seq {
			if root, err := tree.GetRootHash(nil); err != nil || !bytes.Equal(root, trustedRoot[:]) {
				return &ChainError{Seq: t.Seq, Problem: "the tree of the rows up to here does not match the trusted checkpoint: the log was rewritten"}
			}
		}
		if t := opts.Trusted; t != nil && e.Seq == t.Seq && t.HeadHash != "" && hex.EncodeToString(e.Hash) != t.HeadHash {
			return &ChainError{Seq: e.Seq, Problem: "does not match the trusted checkpoint: the log was rewritten"}
		}
		if st != nil && (e.Seq == st.Seq && hex.EncodeToString(e.Hash) != st.Head || e.Seq == st.NextSeq && hex.EncodeToString(e.Hash) != st.NextHead) {
			return &ChainError{Seq: e.Seq, Problem: "does not match the head hash its writer's state file records: the log was rewritten"}
		}
		if err := tree.Append(rfc6962.DefaultHasher.HashLeaf(e.Hash), nil); err != nil {
			return fmt.Errorf("verify: merkle tree: %w", err)
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
	rep.Rows = n - max(a.anchor-1, 0)
	if err := r.checkColumns(ctx); err != nil {
		return nil, err
	}
	if rep.Unguarded, err = unguardedTriggers(ctx, r.db); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if opts.Progress != nil {
		opts.Progress(n, rep.LastSeq)
	}
	if t := opts.Trusted; t != nil && n < t.Seq {
		return nil, &ChainError{Seq: n + 1, Problem: fmt.Sprintf("truncated: the trusted checkpoint covers seq %d but the log ends at %d", t.Seq, n)}
	}
	if t := opts.Trusted; t != nil && n == t.Seq {
		if root, err := tree.GetRootHash(nil); err != nil || !bytes.Equal(root, trustedRoot[:]) {
			return nil, &ChainError{Seq: t.Seq, Problem: "the tree of the rows up to here does not match the trusted checkpoint: the log was rewritten"}
		}
	}
	if st != nil && n < st.Seq {
		return nil, &ChainError{Seq: n + 1, Problem: fmt.Sprintf("the log ends at seq %d but its writer's state file records seq %d: rows %d to %d were cut", n, st.Seq, n+1, st.Seq)}
	}
	rep.Unsigned = rep.Rows
	if rep.Checkpoints > 0 {
		rep.Unsigned = n - (rep.LastSigned + 1) // the rows after the last checkpoint row
	}
	return rep, nil
}

// checkColumns checks, in one pass over the table, that each of the log
// table's columns over the body (tableColumns) IS json_extract(body, its
// path) in every row. The hash covers the body alone, and lookups by
// decision id, approval and shadow diff read the columns: one changed
// would misdirect them while the chain still verifies. The first row that
// differs is a *ChainError naming the column, as is a body SQLite cannot
// read as JSON. Generated columns (a log before migration 9, read without
// being migrated) are the body's by construction and are not checked.
func (r *Reader) checkColumns(ctx context.Context) error {
	generated, err := generatedColumns(ctx, r.db)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if generated {
		return nil
	}
	// json_valid comes first, so that the json_extracts after it never
	// see a body they would fail on; SQLite parses a body once for all
	// of them (its JSON functions share a parse cache within a statement).
	// 2: JSON5 text, what json_extract accepts.
	conds := []string{"NOT json_valid(body, 2)"}
	for _, c := range tableColumns {
		conds = append(conds, c.field.Name+" IS NOT "+extract(c.field))
	}
	var seq int64
	err = r.db.QueryRowContext(ctx, `SELECT seq FROM log WHERE `+strings.Join(conds, " OR ")+` ORDER BY seq LIMIT 1`).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("verify: check the log's columns: %w", err)
	}
	var valid bool
	if err := r.db.QueryRowContext(ctx, `SELECT json_valid(body, 2) FROM log WHERE seq = ?`, seq).Scan(&valid); err != nil {
		return fmt.Errorf("verify: check the columns of seq %d: %w", seq, err)
	}
	if !valid {
		return &ChainError{Seq: seq, Problem: "the body is not JSON SQLite can read, so its columns cannot be checked against it"}
	}
	for _, c := range tableColumns {
		f := c.field
		var differs bool
		var have, want string
		err := r.db.QueryRowContext(ctx, `SELECT `+f.Name+` IS NOT `+extract(f)+`, quote(`+f.Name+`), quote(`+extract(f)+`) FROM log WHERE seq = ?`, seq).Scan(&differs, &have, &want)
		if err != nil {
			return fmt.Errorf("verify: check the columns of seq %d: %w", seq, err)
		}
		if differs {
			return &ChainError{Seq: seq, Problem: fmt.Sprintf("column %s holds %s but the body the hash covers holds %s at %s: lookups by the column would find the wrong rows", f.Name, have, want, f.Path)}
		}
	}
	return fmt.Errorf("verify: seq %d: a column differs from its body, but none does when checked alone", seq)
}

// checkCheckpoint checks a checkpoint row against the chain and the tree
// before it: it must sign the tree of every row before it, whose last leaf
// is the row just before it, in this log, with the key.
func checkCheckpoint(e *Entry, prev []byte, tree *compact.Range, rep *VerifyReport, pub ed25519.PublicKey) error {
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
	var root tlog.Hash
	var err error
	if pub != nil {
		root, err = c.Open(pub)
	} else {
		root, err = c.Root()
	}
	if err != nil {
		return &ChainError{Seq: e.Seq, Problem: "checkpoint " + err.Error()}
	}
	if have, err := tree.GetRootHash(nil); err != nil || !bytes.Equal(have, root[:]) {
		return &ChainError{Seq: e.Seq, Problem: fmt.Sprintf("checkpoint signs a Merkle root that is not the tree of rows 1 to %d", c.Seq)}
	}
	rep.Checkpoints++
	rep.LastSigned = c.Seq
	return nil
}

// anchored is where the chain and the tree start.
type anchored struct {
	anchor int64 // 0: the log starts at seq 1
	prev   []byte
	tree   *compact.Range
	root   tlog.Hash // the anchor's signed root
}

var treeFactory = &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// anchor sets where the chain starts: seq 1 with no previous hash, or, after
// pruning, the first row kept of the chain, which must be a checkpoint that
// a prune record (signed, if a key is given) names, with exactly the rows
// before it that the record kept. The chain then continues from the head
// hash the checkpoint signs, and the tree from its stored frontier, which
// must hash to the root it signs.
func (r *Reader) anchor(ctx context.Context, rep *VerifyReport, pub ed25519.PublicKey) (anchored, error) {
	none := anchored{tree: treeFactory.NewEmptyRange(0)}
	var first, count, last int64
	if err := r.db.QueryRowContext(ctx, `SELECT coalesce(min(seq), 0), count(*), coalesce(max(seq), 0) FROM log`).Scan(&first, &count, &last); err != nil {
		return none, fmt.Errorf("verify: %w", err)
	}
	if count == last {
		return none, nil // seq 1 to last, all there
	}
	recs, err := r.pruneRecords(ctx)
	if err != nil {
		return none, err
	}
	problem := ""
	for _, p := range recs {
		if msg := r.matchPrune(ctx, p, pub); msg != "" {
			if problem == "" {
				problem = msg
			}
			continue
		}
		a, err := r.anchorAt(ctx, p.Anchor, pub)
		if err != nil {
			return none, err
		}
		rep.Anchor = p.Anchor
		return a, nil
	}
	if first == 1 && len(recs) == 0 {
		return none, nil // a gap later on: the scan names it
	}
	if problem == "" {
		problem = fmt.Sprintf("rows 1 to %d are missing, and no signed prune record says they were pruned", first-1)
	}
	return none, &ChainError{Seq: 1, Problem: problem} // the first row missing
}

func (r *Reader) pruneRecords(ctx context.Context) ([]*PruneRecord, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT seq, body FROM log WHERE kind = 'prune' ORDER BY seq DESC`)
	if err != nil {
		return nil, fmt.Errorf("verify: prune records: %w", err)
	}
	defer rows.Close()
	var out []*PruneRecord
	for rows.Next() {
		var seq int64
		var body string
		if err := rows.Scan(&seq, &body); err != nil {
			return nil, err
		}
		var p PruneRecord
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			return nil, &ChainError{Seq: seq, Problem: "prune record: " + err.Error()}
		}
		out = append(out, &p)
	}
	return out, rows.Err()
}

// matchPrune says how the rows before p's anchor differ from what p says
// is left, "" if they do not.
func (r *Reader) matchPrune(ctx context.Context, p *PruneRecord, pub ed25519.PublicKey) string {
	if pub != nil {
		if err := p.Open(pub); err != nil {
			return fmt.Sprintf("the prune record naming anchor %d: %v", p.Anchor, err)
		}
	}
	rows, err := r.db.QueryContext(ctx, `SELECT seq, kind, time, body, hash FROM log WHERE seq < ? ORDER BY seq`, p.Anchor)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	i := 0
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return err.Error()
		}
		if i >= len(p.Kept) || p.Kept[i].Seq != e.Seq {
			return fmt.Sprintf("seq %d is before the anchor at seq %d but the prune record does not keep it", e.Seq, p.Anchor)
		}
		prev, err := hex.DecodeString(p.Kept[i].PrevHash)
		if err != nil || hex.EncodeToString(ChainHash(prev, e)) != p.Kept[i].Hash {
			return fmt.Sprintf("seq %d, kept by the prune record, was changed", e.Seq)
		}
		i++
	}
	if i < len(p.Kept) {
		return fmt.Sprintf("seq %d, kept by the prune record, is missing", p.Kept[i].Seq)
	}
	var kind string
	if err := r.db.QueryRowContext(ctx, `SELECT kind FROM log WHERE seq = ?`, p.Anchor).Scan(&kind); err != nil || kind != string(KindCheckpoint) {
		return fmt.Sprintf("seq %d, the anchor the prune record names, is missing or not a checkpoint", p.Anchor)
	}
	return ""
}

// anchorAt starts the chain and tree at the checkpoint row at seq.
func (r *Reader) anchorAt(ctx context.Context, seq int64, pub ed25519.PublicKey) (anchored, error) {
	var body string
	if err := r.db.QueryRowContext(ctx, `SELECT body FROM log WHERE seq = ?`, seq).Scan(&body); err != nil {
		return anchored{}, fmt.Errorf("verify: anchor: %w", err)
	}
	var c Checkpoint
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		return anchored{}, &ChainError{Seq: seq, Problem: "checkpoint: " + err.Error()}
	}
	head, err := hex.DecodeString(c.HeadHash)
	if err != nil || c.Seq != seq-1 {
		return anchored{}, &ChainError{Seq: seq, Problem: "the anchor checkpoint does not sign the row before it"}
	}
	var root tlog.Hash
	if pub != nil {
		root, err = c.Open(pub)
	} else {
		root, err = c.Root()
	}
	if err != nil {
		return anchored{}, &ChainError{Seq: seq, Problem: "anchor checkpoint " + err.Error()}
	}
	// The frontier of the pruned prefix, from the stored hashes; the
	// signed root vouches for it, the head hash being its last leaf.
	idx := frontierIndexes(seq - 1)
	hs, err := (&hashReader{ctx: ctx, q: r.db}).ReadHashes(idx)
	if err != nil {
		return anchored{}, &ChainError{Seq: seq, Problem: "anchor: " + err.Error()}
	}
	raw := make([][]byte, len(hs))
	for i := range hs {
		raw[i] = hs[i][:]
	}
	tree, err := treeFactory.NewRange(0, uint64(seq-1), raw)
	if err != nil {
		return anchored{}, fmt.Errorf("verify: anchor: %w", err)
	}
	if got, err := tree.GetRootHash(nil); err != nil || !bytes.Equal(got, root[:]) {
		return anchored{}, &ChainError{Seq: seq, Problem: "the stored Merkle hashes of the pruned rows do not hash to the root the anchor checkpoint signs"}
	}
	// The head hash the chain continues from must be the tree's last leaf.
	p, err := tlog.ProveRecord(seq-1, seq-2, &hashReader{ctx: ctx, q: r.db})
	if err == nil {
		err = tlog.CheckRecord(p, seq-1, root, seq-2, tlog.RecordHash(head))
	}
	if err != nil {
		return anchored{}, &ChainError{Seq: seq, Problem: "the anchor checkpoint's head hash is not the last leaf of the tree it signs: " + err.Error()}
	}
	return anchored{anchor: seq, prev: head, tree: tree, root: root}, nil
}
