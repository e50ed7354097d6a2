package sink

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/agentpdp/agentpdp/plugins"
)

// OTLPSink sends rows to an OpenTelemetry Collector as OTLP/HTTP logs: one
// LogRecord per row, event name agentpdp.<kind>, the row's fields as
// attributes and the whole row as the body, and a decision's trace_id as
// the record's trace id, so the decision sits beside the agent's spans.
type OTLPSink struct{ p *poster }

// NewOTLPSink posts to endpoint + /v1/logs. As the OTLP spec says, 429, 502,
// 503 and 504 are retried (honouring Retry-After) and other failures are not.
func NewOTLPSink(c Config) (*OTLPSink, error) {
	if err := Check(c); err != nil {
		return nil, err
	}
	p, err := newPoster(c, strings.TrimSuffix(c.Endpoint, "/")+"/v1/logs", func(status int) bool {
		switch status {
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	})
	if err != nil {
		return nil, err
	}
	p.message = otlpMessage
	return &OTLPSink{p: p}, nil
}

// otlpMessage decodes an OTLP/HTTP error answer: a google.rpc.Status, in
// protobuf (as the request was) or JSON, whose message is what a person
// needs; anything else is shown as text.
func otlpMessage(contentType string, body []byte) string {
	if strings.Contains(contentType, "protobuf") {
		var st statuspb.Status
		if err := proto.Unmarshal(body, &st); err == nil && st.GetMessage() != "" {
			return st.GetMessage()
		}
		return fmt.Sprintf("(%d bytes of undecodable protobuf)", len(body))
	}
	return plainMessage(contentType, body)
}

// Name is the sink's name.
func (s *OTLPSink) Name() string { return s.p.name }

// Close releases idle connections.
func (s *OTLPSink) Close() error {
	s.p.close()
	return nil
}

// attributes are the row fields copied to a record's attributes, as
// agentpdp.<field>; nested ones by path.
var attributes = []string{"kind", "decision_id", "decision", "principal", "action", "resource", "classification",
	"policy_version", "status", "approver", "approved", "acted_against_decision", "checkpoint_seq", "head_hash"}

// Logs converts a batch to OTLP logs.
func Logs(b *plugins.Batch) (plog.Logs, error) {
	logs := plog.NewLogs()
	rl := logs.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "agentpdp")
	rl.Resource().Attributes().PutStr("agentpdp.origin", b.Origin)
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName("github.com/agentpdp/agentpdp")
	now := pcommon.NewTimestampFromTime(time.Now())
	for _, raw := range b.Rows {
		var row map[string]any
		if err := json.Unmarshal(raw, &row); err != nil {
			return logs, fmt.Errorf("row: %w", err)
		}
		rec := sl.LogRecords().AppendEmpty()
		kind, _ := row["kind"].(string)
		rec.SetEventName("agentpdp." + kind)
		rec.SetObservedTimestamp(now)
		if ts, ok := row["time"].(string); ok {
			if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
				rec.SetTimestamp(pcommon.NewTimestampFromTime(t))
			}
		}
		rec.SetSeverityNumber(plog.SeverityNumberInfo)
		rec.SetSeverityText("INFO")
		if row["decision"] == "deny" || row["acted_against_decision"] == true {
			rec.SetSeverityNumber(plog.SeverityNumberWarn)
			rec.SetSeverityText("WARN")
		}
		attrs := rec.Attributes()
		attrs.PutStr("agentpdp.origin", b.Origin)
		if seq, ok := row["seq"].(float64); ok {
			attrs.PutInt("agentpdp.seq", int64(seq))
		}
		if h, ok := row["hash"].(string); ok {
			attrs.PutStr("agentpdp.hash", h)
		}
		for _, k := range attributes {
			switch v := row[k].(type) {
			case string:
				attrs.PutStr("agentpdp."+k, v)
			case bool:
				attrs.PutBool("agentpdp."+k, v)
			case float64:
				attrs.PutInt("agentpdp."+k, int64(v))
			}
		}
		if req, ok := row["request"].(map[string]any); ok {
			for _, k := range []string{"session_id", "task_id", "tool_call_id", "on_behalf_of", "parent_decision_id"} {
				if v, ok := req[k].(string); ok && v != "" {
					attrs.PutStr("agentpdp."+k, v)
				}
			}
			if tid, ok := req["trace_id"].(string); ok {
				if b, err := hex.DecodeString(tid); err == nil && len(b) == 16 {
					rec.SetTraceID(pcommon.TraceID(b))
				}
			}
		}
		rec.Body().SetStr(string(raw))
	}
	return logs, nil
}

// Ship exports the batch as OTLP protobuf.
func (s *OTLPSink) Ship(ctx context.Context, b *plugins.Batch) error {
	logs, err := Logs(b)
	if err != nil {
		return plugins.Permanent(fmt.Errorf("sink %s: %w", s.p.name, err))
	}
	payload, err := plogotlp.NewExportRequestFromLogs(logs).MarshalProto()
	if err != nil {
		return plugins.Permanent(fmt.Errorf("sink %s: encode: %w", s.p.name, err))
	}
	return s.p.post(ctx, "application/x-protobuf", payload, nil)
}
