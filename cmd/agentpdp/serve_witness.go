package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/plugins/shipper"
	"github.com/agentpdp/agentpdp/plugins/sink"
)

// keepCosignatures makes every http sink configured with witness: true
// write the collector's newest cosigned checkpoint into the log, as a
// cosignature row, whenever it is newer than the last one kept.
func keepCosignatures(ctx context.Context, s *shipper.Shipper, log *decisionlog.Log, logger *slog.Logger) error {
	last := int64(0)
	kept, err := log.Query(ctx, decisionlog.Filter{Kinds: []decisionlog.Kind{decisionlog.KindCosignature}, Limit: 1})
	if err != nil {
		return fmt.Errorf("witness: read the last cosignature: %w", err)
	}
	if len(kept) == 1 {
		var c decisionlog.Cosignature
		if err := json.Unmarshal(kept[0].Body, &c); err == nil {
			last = c.TreeSize
		}
	}
	var mu sync.Mutex // sinks ship on goroutines of their own
	for _, t := range s.Targets {
		hs, ok := t.Sink.(*sink.HTTPSink)
		if !ok || !hs.Witness() {
			continue
		}
		name := hs.Name()
		hs.OnWitness(func(ctx context.Context, size int64, checkpoint string) {
			mu.Lock()
			defer mu.Unlock()
			if size <= last {
				return
			}
			body, err := json.Marshal(decisionlog.Cosignature{TreeSize: size, Checkpoint: checkpoint, Witness: name})
			if err == nil {
				err = log.Append(ctx, &decisionlog.Entry{Kind: decisionlog.KindCosignature, Time: time.Now(), Body: body, Keys: &decisionlog.Keys{}})
			}
			if err != nil {
				// The collector keeps it too: GET /v1/witness/{origin}.
				logger.Warn("witness: could not keep a cosignature in the log", "sink", name, "tree_size", size, "err", err)
				return
			}
			last = size
		})
	}
	return nil
}
