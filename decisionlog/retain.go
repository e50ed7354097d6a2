package decisionlog

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Retention is the policy Retain applies: rows older than MaxAge or beyond
// the newest MaxRows are deleted, but only once every sink in Sinks has
// shipped them, and only up to a signed checkpoint (see Prune).
type Retention struct {
	MaxAge  time.Duration // 0 keeps rows whatever their age
	MaxRows int64         // 0 sets no row limit
	Every   time.Duration // how often to prune; must be positive
	Sinks   []string      // sinks whose cursors hold rows back
}

// Rule says the policy in the words a prune record keeps.
func (r Retention) Rule() string {
	var parts []string
	if r.MaxAge > 0 {
		parts = append(parts, "max_age="+r.MaxAge.String())
	}
	if r.MaxRows > 0 {
		parts = append(parts, "max_rows="+strconv.FormatInt(r.MaxRows, 10))
	}
	if len(r.Sinks) > 0 {
		parts = append(parts, "shipped_by="+strings.Join(r.Sinks, ","))
	}
	return strings.Join(parts, " ")
}

// Retain prunes l every r.Every until ctx is done. Errors are logged and
// retried at the next tick: retention must never stop the log it trims.
func (l *Log) Retain(ctx context.Context, r Retention, logger *slog.Logger) {
	t := time.NewTicker(r.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		bound, err := l.PruneBound(ctx, r.MaxAge, r.MaxRows, r.Sinks, time.Now())
		if err != nil || bound == 0 {
			if err != nil {
				logger.Error("retention", "err", err)
			}
			continue
		}
		res, err := l.Prune(ctx, bound, r.Rule())
		switch {
		case errors.Is(err, ErrNoAnchor):
			logger.Debug("nothing pruned yet: no signed checkpoint within the rows retention allows deleting", "up_to", bound)
		case err != nil:
			logger.Error("retention", "err", err)
		default:
			logger.Info("pruned the decision log", "deleted", res.Deleted, "anchor_seq", res.Anchor)
		}
	}
}
