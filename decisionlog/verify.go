package decisionlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
)

// ChainError is the first row at which the hash chain does not hold: a row
// changed, removed, inserted or reordered since it was written.
type ChainError struct {
	Seq     int64  // the first row that fails
	Problem string // what is wrong with it
}

func (e *ChainError) Error() string { return fmt.Sprintf("seq %d: %s", e.Seq, e.Problem) }

// VerifyChain recomputes every row's hash from the start of the log, one row
// in memory at a time, and returns the number of rows checked. If the chain
// breaks, the error is a *ChainError naming the first row that fails.
func (r *Reader) VerifyChain(ctx context.Context) (int64, error) {
	var prev []byte
	var n int64
	err := r.Scan(ctx, 1, func(e *Entry) error {
		n++
		switch {
		case e.Seq > n:
			return &ChainError{Seq: n, Problem: fmt.Sprintf("missing: the next row is seq %d", e.Seq)}
		case e.Seq < n:
			return &ChainError{Seq: e.Seq, Problem: "out of order"}
		case !bytes.Equal(ChainHash(prev, e), e.Hash):
			return &ChainError{Seq: e.Seq, Problem: "hash does not match its content and the previous row"}
		}
		prev = e.Hash
		return nil
	})
	var ce *ChainError
	if errors.As(err, &ce) {
		return n - 1, err
	}
	return n, err
}
