package sink_test

import (
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/plugins"
	"github.com/agentpdp/agentpdp/plugins/sink"
)

// otlpReceiver decodes OTLP/HTTP log exports as a collector does.
type otlpReceiver struct {
	mu        sync.Mutex
	records   []plog.LogRecord
	origin    []string
	resources []pcommon.Map // each record's resource attributes
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/logs" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want POST /v1/logs, protobuf", http.StatusBadRequest)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, _ := io.ReadAll(body)
	req := plogotlp.NewExportRequest()
	if err := req.UnmarshalProto(b); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	rls := req.Logs().ResourceLogs()
	for i := range rls.Len() {
		origin, _ := rls.At(i).Resource().Attributes().Get("agentpdp.origin")
		sls := rls.At(i).ScopeLogs()
		for j := range sls.Len() {
			recs := sls.At(j).LogRecords()
			for k := range recs.Len() {
				o.records = append(o.records, recs.At(k))
				o.origin = append(o.origin, origin.Str())
				o.resources = append(o.resources, rls.At(i).Resource().Attributes())
			}
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	resp, _ := plogotlp.NewExportResponse().MarshalProto()
	w.Write(resp)
}

func TestShip_OTLP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.db")
	l, err := decisionlog.Open(t.Context(), path, decisionlog.Options{Durability: decisionlog.DurabilityNormal})
	if err != nil {
		t.Fatal(err)
	}
	traceID := "4bf92f3577b34da6a3ce929d0e0e4736"
	for i := range 12 {
		body := fmt.Sprintf(`{"decision_id":"d-%d","decision":"deny","principal":"Agent::\"a\"","action":"Action::\"x\"","resource":"Tool::\"t\"","request":{"trace_id":%q,"session_id":"s-1"}}`, i, traceID)
		l.Append(t.Context(), &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: json.RawMessage(body)})
	}
	l.Append(t.Context(), &decisionlog.Entry{Kind: "outcome", Time: time.Now(), Body: json.RawMessage(`{"decision_id":"d-3","status":"success","acted_against_decision":true}`)})
	origin := l.Origin()
	l.Close(t.Context())

	rc := &otlpReceiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	sink, err := sink.New(sink.Config{Name: "otel", Type: "otlp", Endpoint: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if err := pdptest.Shipper(t, path, sink).Once(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(rc.records) != 13 {
		t.Fatalf("%d records arrived, want 13", len(rc.records))
	}
	first := rc.records[0]
	attr := func(r plog.LogRecord, k string) string {
		v, ok := r.Attributes().Get(k)
		if !ok {
			return ""
		}
		return v.AsString()
	}
	if first.EventName() != "agentpdp.decision" || attr(first, "agentpdp.decision") != "deny" || attr(first, "agentpdp.decision_id") != "d-0" ||
		attr(first, "agentpdp.seq") != "1" || attr(first, "agentpdp.session_id") != "s-1" || attr(first, "agentpdp.origin") != origin ||
		rc.origin[0] != origin || first.SeverityText() != "WARN" || first.Timestamp() == 0 {
		t.Errorf("decision record: event %q attrs %v severity %s", first.EventName(), first.Attributes().AsRaw(), first.SeverityText())
	}
	if tid := first.TraceID(); hex.EncodeToString(tid[:]) != traceID {
		got := hex.EncodeToString(tid[:])
		t.Errorf("trace id: %s, want %s", got, traceID)
	}
	if !strings.Contains(first.Body().Str(), `"decision_id":"d-0"`) {
		t.Errorf("body: %s", first.Body().Str())
	}
	last := rc.records[12]
	if last.EventName() != "agentpdp.outcome" || attr(last, "agentpdp.acted_against_decision") != "true" || attr(last, "agentpdp.seq") != "13" {
		t.Errorf("outcome record: %q %v", last.EventName(), last.Attributes().AsRaw())
	}
}

// statusAnswer writes an OTLP/HTTP error answer: a google.rpc.Status in
// protobuf, as a Collector sends.
func statusAnswer(w http.ResponseWriter, code int, msg string) {
	b, _ := proto.Marshal(&statuspb.Status{Code: 3, Message: msg})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(code)
	w.Write(b)
}

// TestOTLP_ErrorsDecodedAndTooLargeSplits: a Collector's 400 carries a
// protobuf google.rpc.Status; the shipper shows its message (not raw
// bytes), and one that says "too large" splits the batch.
func TestOTLP_ErrorsDecodedAndTooLargeSplits(t *testing.T) {
	path, _ := pdptest.LogWith(t, 20)
	o := &otlpReceiver{}
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		zr, _ := gzip.NewReader(r.Body)
		b, _ := io.ReadAll(zr)
		req := plogotlp.NewExportRequest()
		if err := req.UnmarshalProto(b); err != nil {
			statusAnswer(w, http.StatusBadRequest, err.Error())
			return
		}
		if req.Logs().LogRecordCount() > 4 {
			statusAnswer(w, http.StatusBadRequest, "reading request body: http: request body too large")
			return
		}
		// Accept: hand it to the decoding receiver.
		r.Body = io.NopCloser(bytes.NewReader(gzipped(b)))
		o.ServeHTTP(w, r)
	}))
	defer srv.Close()
	sk, err := sink.New(sink.Config{Name: "otel", Type: "otlp", Endpoint: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	s := pdptest.Shipper(t, path, sk)
	s.Targets[0].BatchSize = 10
	if err := s.Once(t.Context()); err != nil {
		t.Fatal(err)
	}
	o.mu.Lock()
	got := len(o.records)
	o.mu.Unlock()
	st := s.Status(t.Context())[0]
	if got != 20 || st.Cursor != 20 {
		t.Fatalf("%d records arrived, cursor %d", got, st.Cursor)
	}
	if st.LastError != "" || st.Failures == 0 {
		t.Errorf("status: %+v", st)
	}

	// A refusal for good shows the Status message.
	path2, _ := pdptest.LogWith(t, 3)
	srv2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		statusAnswer(w, http.StatusBadRequest, "log record has an invalid trace id")
	}))
	defer srv2.Close()
	sink2, _ := sink.New(sink.Config{Name: "otel", Type: "otlp", Endpoint: srv2.URL})
	s2 := pdptest.Shipper(t, path2, sink2)
	err = s2.Once(t.Context())
	if err == nil || !strings.Contains(err.Error(), "400 Bad Request: log record has an invalid trace id") {
		t.Errorf("error: %v", err)
	}
	if msg := s2.Status(t.Context())[0].LastError; strings.ContainsAny(msg, "\b\x03\x12") {
		t.Errorf("raw protobuf in the status: %q", msg)
	}
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// wantAttributes checks what a Collector user filters on in one decision
// record and its outcome; shared with the real Collector's test.
func wantAttributes(t *testing.T, dec, out plog.LogRecord, res pcommon.Map) {
	t.Helper()
	get := func(r plog.LogRecord, k string) pcommon.Value {
		v, ok := r.Attributes().Get(k)
		if !ok {
			t.Errorf("%s: no attribute %s in %v", r.EventName(), k, r.Attributes().AsRaw())
		}
		return v
	}
	for k, want := range map[string]string{
		"gen_ai.agent.id": "billing-bot", "gen_ai.tool.name": "sql.query", "gen_ai.tool.call.id": "call_1",
		"gen_ai.operation.name": "execute_tool", "session.id": "s-42", "enduser.id": "alice@example.com",
		"agentpdp.decision": "deny", "agentpdp.session_id": "s-42",
	} {
		if got := get(dec, k).AsString(); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if v := get(dec, "agentpdp.seq"); v.Type() != pcommon.ValueTypeInt {
		t.Errorf("agentpdp.seq is %s", v.Type())
	}
	if v := get(dec, "agentpdp.eval_ns"); v.Type() != pcommon.ValueTypeInt || v.Int() != 1234 {
		t.Errorf("agentpdp.eval_ns: %s %v", v.Type(), v.AsRaw())
	}
	req := get(dec, "agentpdp.request")
	if req.Type() != pcommon.ValueTypeMap {
		t.Fatalf("agentpdp.request is %s, want a map", req.Type())
	}
	if ctx, ok := req.Map().Get("context"); !ok || ctx.Type() != pcommon.ValueTypeMap {
		t.Errorf("request.context: %v", req.Map().AsRaw())
	} else if n, _ := ctx.Map().Get("rows"); n.Type() != pcommon.ValueTypeInt || n.Int() != 3 {
		t.Errorf("request.context.rows: %v", n.AsRaw())
	} else if f, _ := ctx.Map().Get("score"); f.Type() != pcommon.ValueTypeDouble {
		t.Errorf("request.context.score: %v", f.AsRaw())
	}
	ids := get(dec, "agentpdp.policy_ids")
	if ids.Type() != pcommon.ValueTypeSlice || ids.Slice().Len() != 2 || ids.Slice().At(0).Str() != "no-prod-writes" {
		t.Errorf("agentpdp.policy_ids: %v", ids.AsRaw())
	}
	const traceID, spanID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	if tid, sid := dec.TraceID(), dec.SpanID(); hex.EncodeToString(tid[:]) != traceID || hex.EncodeToString(sid[:]) != spanID {
		t.Errorf("decision trace %x span %x, from a traceparent", tid, sid)
	}
	if tid := out.TraceID(); hex.EncodeToString(tid[:]) != traceID {
		t.Errorf("the outcome's trace id %x, want its decision's", tid)
	}
	for _, k := range []string{"service.name", "service.version", "service.instance.id", "host.name"} {
		if v, ok := res.Get(k); !ok || v.Str() == "" {
			t.Errorf("resource attribute %s missing: %v", k, res.AsRaw())
		}
	}
}

// decisionAndOutcome are a decision row (its trace_id a W3C traceparent)
// and its outcome's row as the engine writes them.
const (
	decisionBody = `{"decision_id":"d-1","decision":"deny","principal":"Agent::\"billing-bot\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"sql.query\"",` +
		`"reasons":[{"policy":"no-prod-writes","effect":"forbid"},{"policy":"tools","effect":"permit"}],"errors":[],"policy_version":"sha256:ab","eval_ns":1234,` +
		`"request":{"principal":"Agent::\"billing-bot\"","context":{"rows":3,"score":0.5,"args":{"query":"select 1"}},"session_id":"s-42","tool_call_id":"call_1",` +
		`"on_behalf_of":"alice@example.com","trace_id":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}`
	outcomeBody = `{"decision_id":"d-1","status":"skipped","decision":"deny","principal":"Agent::\"billing-bot\"","action":"Action::\"invoke_tool\"","resource":"Tool::\"sql.query\"","trace_id":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}`
)

func TestLogs_TypedAttributesAndOTelNames(t *testing.T) {
	b := &plugins.Batch{Origin: "host-a", FirstSeq: 1, LastSeq: 2, Rows: [][]byte{
		[]byte(`{"origin":"host-a","seq":1,"kind":"decision","time":"2026-11-30T04:00:00Z","hash":"aa",` + decisionBody[1:]),
		[]byte(`{"origin":"host-a","seq":2,"kind":"outcome","time":"2026-11-30T04:00:01Z","hash":"bb",` + outcomeBody[1:]),
	}}
	logs, err := sink.Logs(b, sink.DefaultResource())
	if err != nil {
		t.Fatal(err)
	}
	rl := logs.ResourceLogs().At(0)
	recs := rl.ScopeLogs().At(0).LogRecords()
	wantAttributes(t, recs.At(0), recs.At(1), rl.Resource().Attributes())
	if v, _ := rl.Resource().Attributes().Get("service.instance.id"); v.Str() != "host-a" {
		t.Errorf("service.instance.id %q, want the origin", v.Str())
	}
}

func TestParseTraceID(t *testing.T) {
	for in, ok := range map[string]bool{
		"4bf92f3577b34da6a3ce929d0e0e4736":                        true,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01": true,
		"00000000000000000000000000000000":                        false,
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01": false,
		"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01":  false,
		"trace-1": false,
	} {
		if _, _, got := sink.ParseTraceID(in); got != ok {
			t.Errorf("ParseTraceID(%q) = %v", in, got)
		}
	}
}
