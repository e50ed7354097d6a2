package decisionlog

import (
	"context"
	"fmt"
	"time"

	"github.com/agentpdp/agentpdp/pdp/wire"
)

// Bucket counts the decisions logged in [Start, Start+width), by answer
// (allow, deny, step_up).
type Bucket struct {
	Start  time.Time        `json:"start"`
	Counts map[string]int64 `json:"counts"`
}

// Timeline counts decisions in [since, until) in buckets of width, oldest
// first, every bucket present (empty ones with no counts). Buckets start on
// multiples of width since the Unix epoch, so two calls line up.
func (r *Reader) Timeline(ctx context.Context, since, until time.Time, width time.Duration) ([]Bucket, error) {
	if width <= 0 || !since.Before(until) {
		return nil, fmt.Errorf("timeline: want since before until and a positive width, got %s to %s by %s", since, until, width)
	}
	w := int64(width)
	first, last := since.UnixNano()/w, (until.UnixNano()-1)/w
	if last-first >= 10000 {
		return nil, fmt.Errorf("timeline: %d buckets; at most 10000", last-first+1)
	}
	out := make([]Bucket, last-first+1)
	for i := range out {
		out[i] = Bucket{Start: time.Unix(0, (first+int64(i))*w).UTC(), Counts: map[string]int64{}}
	}
	decision := fieldSQL(wire.FieldDecision)
	rows, err := r.db.QueryContext(ctx, `SELECT time / ? AS b, `+decision+`, count(*) FROM log
		WHERE kind = 'decision' AND time >= ? AND time < ? GROUP BY b, `+decision, w, since.UnixNano(), until.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("timeline: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var b, n int64
		var decision string
		if err := rows.Scan(&b, &decision, &n); err != nil {
			return nil, fmt.Errorf("timeline: %w", err)
		}
		if i := b - first; i >= 0 && i < int64(len(out)) {
			out[i].Counts[decision] += n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("timeline: %w", err)
	}
	return out, nil
}

// topColumns are the record fields [Reader.Top] groups by, by name.
var topColumns = map[string]wire.Field{
	wire.FieldPrincipal.Name: wire.FieldPrincipal,
	wire.FieldAction.Name:    wire.FieldAction,
	wire.FieldResource.Name:  wire.FieldResource,
}

// Top returns the values of column (principal, action or resource, in Cedar
// form) that occur most in decisions answered decision (any answer if
// empty) since the given time, most first, at most limit of them.
func (r *Reader) Top(ctx context.Context, column, decision string, since time.Time, limit int) ([]Count, error) {
	field, ok := topColumns[column]
	if !ok {
		return nil, fmt.Errorf("top: column %q: want principal, action or resource", column)
	}
	q := `SELECT ` + fieldSQL(field) + ` AS k, count(*) AS n FROM log WHERE kind = 'decision' AND time >= ?`
	args := []any{since.UnixNano()}
	if decision != "" {
		q += ` AND ` + fieldSQL(wire.FieldDecision) + ` = ?`
		args = append(args, decision)
	}
	rows, err := r.db.QueryContext(ctx, q+` GROUP BY k ORDER BY n DESC, k LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("top %s: %w", column, err)
	}
	defer rows.Close()
	var out []Count
	for rows.Next() {
		var c Count
		var k *string
		if err := rows.Scan(&k, &c.Count); err != nil {
			return nil, fmt.Errorf("top %s: %w", column, err)
		}
		if k != nil {
			c.Key = *k
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
