package sink

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"runtime/debug"
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
type OTLPSink struct {
	p   *poster
	res Resource
}

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
	return &OTLPSink{p: p, res: DefaultResource()}, nil
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

// Resource is what every export says of the agentpdp that sent it, as
// OpenTelemetry's resource attributes service.version, service.instance.id
// and host.name. InstanceID defaults to the log's origin.
type Resource struct {
	Version    string
	InstanceID string
	HostName   string
}

// DefaultResource is this process's: the module version it was built as
// and the host's name.
func DefaultResource() Resource {
	r := Resource{Version: "(devel)"}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		r.Version = bi.Main.Version
	}
	r.HostName, _ = os.Hostname()
	return r
}

// rowMeta are the fields every row has, set as their own attributes.
var rowMeta = map[string]bool{"origin": true, "seq": true, "kind": true, "time": true, "hash": true}

// Logs converts a batch to OTLP logs: one LogRecord per row, event name
// agentpdp.<kind>. Every field of the row is an attribute agentpdp.<field>,
// typed (strings, integers, doubles, booleans; nested objects as maps,
// arrays as slices); beside them OpenTelemetry's names where they exist:
// session.id, enduser.id, gen_ai.agent.id, gen_ai.tool.name,
// gen_ai.tool.call.id, gen_ai.operation.name=execute_tool. The deciding
// policies are agentpdp.policy_ids. A trace_id, 32 hex digits or a W3C
// traceparent, sets the record's trace id (and a traceparent its span id);
// outcomes and approvals carry their decision's. The body is the row's
// JSON, exactly as shipped elsewhere.
func Logs(b *plugins.Batch, res Resource) (plog.Logs, error) {
	logs := plog.NewLogs()
	rl := logs.ResourceLogs().AppendEmpty()
	ra := rl.Resource().Attributes()
	ra.PutStr("service.name", "agentpdp")
	if res.Version != "" {
		ra.PutStr("service.version", res.Version)
	}
	if res.InstanceID == "" {
		res.InstanceID = b.Origin
	}
	ra.PutStr("service.instance.id", res.InstanceID)
	if res.HostName != "" {
		ra.PutStr("host.name", res.HostName)
	}
	ra.PutStr("agentpdp.origin", b.Origin)
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName("github.com/agentpdp/agentpdp")
	now := pcommon.NewTimestampFromTime(time.Now())
	for _, raw := range b.Rows {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var row map[string]any
		if err := dec.Decode(&row); err != nil {
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
		attrs.PutStr("agentpdp.kind", kind)
		if n, ok := row["seq"].(json.Number); ok {
			if seq, err := n.Int64(); err == nil {
				attrs.PutInt("agentpdp.seq", seq)
			}
		}
		if h, ok := row["hash"].(string); ok {
			attrs.PutStr("agentpdp.hash", h)
		}
		for k, v := range row {
			if !rowMeta[k] {
				putValue(attrs.PutEmpty("agentpdp."+k), v)
			}
		}
		req, _ := row["request"].(map[string]any)
		str := func(m map[string]any, k string) string { v, _ := m[k].(string); return v }
		// The request's own ids, flat, as before the nested map existed.
		for _, k := range []string{"session_id", "task_id", "tool_call_id", "on_behalf_of", "parent_decision_id"} {
			if v := str(req, k); v != "" {
				attrs.PutStr("agentpdp."+k, v)
			}
		}
		// OpenTelemetry's names (semantic conventions: session, enduser,
		// gen_ai) beside agentpdp's.
		if v := str(req, "session_id"); v != "" {
			attrs.PutStr("session.id", v)
		}
		if v := str(req, "on_behalf_of"); v != "" {
			attrs.PutStr("enduser.id", v)
		}
		if typ, id, ok := entityRef(str(row, "principal")); ok && typ != "" {
			attrs.PutStr("gen_ai.agent.id", id)
		}
		toolCall := str(req, "tool_call_id")
		if toolCall != "" {
			attrs.PutStr("gen_ai.tool.call.id", toolCall)
		}
		if typ, id, ok := entityRef(str(row, "resource")); ok && (typ == "Tool" || strings.HasSuffix(typ, "::Tool")) {
			attrs.PutStr("gen_ai.tool.name", id)
			attrs.PutStr("gen_ai.operation.name", "execute_tool")
		} else if toolCall != "" {
			attrs.PutStr("gen_ai.operation.name", "execute_tool")
		}
		if reasons, ok := row["reasons"].([]any); ok {
			ids := attrs.PutEmptySlice("agentpdp.policy_ids")
			for _, r := range reasons {
				if m, ok := r.(map[string]any); ok {
					if id := str(m, "policy"); id != "" {
						ids.AppendEmpty().SetStr(id)
					}
				}
			}
		}
		trace := str(req, "trace_id")
		if trace == "" {
			trace = str(row, "trace_id") // outcomes and approvals: their decision's
		}
		if tid, sid, ok := ParseTraceID(trace); ok {
			rec.SetTraceID(tid)
			if !sid.IsEmpty() {
				rec.SetSpanID(sid)
			}
		}
		rec.Body().SetStr(string(raw))
	}
	return logs, nil
}

// ParseTraceID reads a trace id given as 32 hex digits, or as a W3C
// traceparent (version-traceid-parentid-flags, Trace Context §3.2), which
// also gives the parent span. An all-zero id is not valid.
func ParseTraceID(s string) (pcommon.TraceID, pcommon.SpanID, bool) {
	var tid pcommon.TraceID
	var sid pcommon.SpanID
	s = strings.TrimSpace(s)
	if parts := strings.Split(s, "-"); len(parts) == 4 && len(parts[0]) == 2 && parts[0] != "ff" &&
		len(parts[1]) == 32 && len(parts[2]) == 16 && len(parts[3]) == 2 {
		t, err1 := hex.DecodeString(parts[1])
		p, err2 := hex.DecodeString(parts[2])
		if err1 != nil || err2 != nil {
			return tid, sid, false
		}
		copy(tid[:], t)
		copy(sid[:], p)
		return tid, sid, !tid.IsEmpty()
	}
	if b, err := hex.DecodeString(s); err == nil && len(b) == 16 {
		copy(tid[:], b)
		return tid, sid, !tid.IsEmpty()
	}
	return tid, sid, false
}

// entityRef splits a Cedar entity reference, Type::"id", into its parts.
func entityRef(s string) (typ, id string, ok bool) {
	i := strings.LastIndex(s, "::\"")
	if i < 0 || !strings.HasSuffix(s, "\"") {
		return "", "", false
	}
	var unq string
	if err := json.Unmarshal([]byte(s[i+2:]), &unq); err != nil {
		return "", "", false
	}
	return s[:i], unq, true
}

// putValue sets v, a JSON value decoded with UseNumber, as a typed
// attribute value: integers stay integers, objects become maps.
func putValue(dst pcommon.Value, v any) {
	switch v := v.(type) {
	case string:
		dst.SetStr(v)
	case bool:
		dst.SetBool(v)
	case json.Number:
		if i, err := v.Int64(); err == nil {
			dst.SetInt(i)
		} else if f, err := v.Float64(); err == nil {
			dst.SetDouble(f)
		} else {
			dst.SetStr(v.String())
		}
	case map[string]any:
		m := dst.SetEmptyMap()
		m.EnsureCapacity(len(v))
		for k, e := range v {
			putValue(m.PutEmpty(k), e)
		}
	case []any:
		sl := dst.SetEmptySlice()
		sl.EnsureCapacity(len(v))
		for _, e := range v {
			putValue(sl.AppendEmpty(), e)
		}
	case nil:
		// an empty value: OTLP's "null"
	}
}

// Ship exports the batch as OTLP protobuf.
func (s *OTLPSink) Ship(ctx context.Context, b *plugins.Batch) error {
	logs, err := Logs(b, s.res)
	if err != nil {
		return plugins.Permanent(err)
	}
	payload, err := plogotlp.NewExportRequestFromLogs(logs).MarshalProto()
	if err != nil {
		return plugins.Permanent(fmt.Errorf("encode: %w", err))
	}
	return s.p.post(ctx, "application/x-protobuf", payload, nil)
}
