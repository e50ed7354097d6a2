package mcpproxy_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp/mcpproxy"
)

type rpcError struct {
	Code    int            `json:"code"`
	Message string         `json:"message"`
	Data    map[string]any `json:"data"`
}

type answer struct {
	ID     any             `json:"id"`
	Result json.RawMessage `json:"result"`
	Method string          `json:"method"`
	Error  *rpcError       `json:"error"`
}

func parseAnswer(t testing.TB, b []byte) answer {
	t.Helper()
	var a answer
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("answer %s: %v", b, err)
	}
	return a
}

// decisions are the log's decision rows, in order.
func decisions(rows []map[string]any) []map[string]any {
	var out []map[string]any
	for _, r := range rows {
		if r["kind"] == "decision" {
			out = append(out, r)
		}
	}
	return out
}

func outcomes(rows []map[string]any) []map[string]any {
	var out []map[string]any
	for _, r := range rows {
		if r["kind"] == "outcome" {
			out = append(out, r)
		}
	}
	return out
}

func reasonOf(d map[string]any) string {
	rs, _ := d["reasons"].([]any)
	if len(rs) == 0 {
		return ""
	}
	return rs[0].(map[string]any)["policy"].(string)
}

// expectNothing fails if the server received anything within a moment.
func (s *session) expectNothing() {
	s.t.Helper()
	select {
	case b := <-s.server.got:
		s.t.Errorf("the server received %s; a refused message must never reach it", b)
	case <-time.After(150 * time.Millisecond):
	}
}

// ping makes sure everything sent before it was read, and is answered.
func (s *session) ping() {
	s.t.Helper()
	s.send(`{"jsonrpc":"2.0","id":"sync","method":"ping"}`)
	for {
		if a := parseAnswer(s.t, s.next()); a.ID == "sync" {
			return
		}
	}
}

// TestRefusesWhatAServerCouldReadDifferently: issue 11's case-variant
// members and their kind. Each is refused with a JSON-RPC error, never
// reaches the server, and a tools/call among them is a logged deny.
func TestRefusesWhatAServerCouldReadDifferently(t *testing.T) {
	cases := []struct {
		name, line string
		code       int
		tool       string // the logged deny's action; "" if no deny is logged
	}{
		{"Name beside name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-env","Name":"echo","arguments":{}}}`, -32602, "get-env"},
		{"Arguments beside arguments", `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"env":"dev"},"Arguments":{"env":"prod"}}}`, -32602, "echo"},
		{"Method beside method", `{"jsonrpc":"2.0","id":3,"method":"tools/call","Method":"ping","params":{"name":"echo","arguments":{}}}`, -32600, "echo"},
		{"ID beside id", `{"jsonrpc":"2.0","id":4,"ID":5,"method":"tools/call","params":{"name":"echo"}}`, -32600, "echo"},
		{"duplicate name", `{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo","name":"get-env"}}`, -32700, "echo"},
		{"duplicate argument", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"env":"dev","env":"prod"}}}`, -32700, "echo"},
		{"invalid UTF-8", "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"env\":\"staging\xff\"}}}", -32700, "echo"},
		{"lone surrogate", `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"env":"\ud800"}}}`, -32700, "echo"},
		{"too deep", `{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"echo","arguments":{"a":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}}}`, -32700, "echo"},
		{"no jsonrpc", `{"id":11,"method":"tools/call","params":{"name":"echo"}}`, -32600, "echo"},
		{"arguments not an object", `{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"echo","arguments":"env=prod"}}`, -32602, "echo"},
		{"two values on a line", `{"jsonrpc":"2.0","id":13,"method":"tools/call","params":{"name":"echo"}} {"jsonrpc":"2.0","id":14,"method":"tools/call","params":{"name":"echo"}}`, -32700, "echo"},
		{"a string", `"tools/call"`, -32600, ""},
		{"a number", `42`, -32600, ""},
		{"null", `null`, -32600, ""},
		{"Method only", `{"jsonrpc":"2.0","id":15,"Method":"tools/call","params":{"name":"echo"}}`, -32600, ""},
	}
	d := startDaemon(t, 0, decisionlog.DurabilityNormal)
	s := newSession(t, d, echoServer, nil)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(decisions(d.rows(t)))
			s.send(tc.line)
			a := parseAnswer(t, s.next())
			if a.Error == nil || a.Error.Code != tc.code {
				t.Fatalf("answer %+v, want error %d", a, tc.code)
			}
			s.ping()
			s.expectPingOnly()
			ds := decisions(d.rows(t))[before:]
			if tc.tool == "" {
				if len(ds) != 0 {
					t.Errorf("decisions logged: %v", ds)
				}
				return
			}
			if len(ds) != 1 || ds[0]["decision"] != "deny" || ds[0]["action"] != `Action::"`+tc.tool+`"` || reasonOf(ds[0]) != "request_refused" {
				t.Errorf("want one logged deny of %s, reason request_refused; got %v", tc.tool, ds)
			}
		})
	}
}

// expectPingOnly: the server's next received line is the sync ping.
func (s *session) expectPingOnly() {
	s.t.Helper()
	if got := string(s.received()); got != `{"jsonrpc":"2.0","id":"sync","method":"ping"}` {
		s.t.Errorf("the server received %s before the ping; a refused message must never reach it", got)
	}
}

// TestForwardsTheCheckedMessage: the server gets the re-encoded message the
// decision was made on, not the line as sent.
func TestForwardsTheCheckedMessage(t *testing.T) {
	d := startDaemon(t, 0, decisionlog.DurabilityNormal)
	s := newSession(t, d, echoServer, nil)
	s.send(` { "jsonrpc" : "2.0", "id" : 1, "method" : "tools/call", "params" : { "name" : "ech\u006f", "arguments" : { "q" : "\u0061\/b", "n": 1.50 } } } `)
	got := string(s.received())
	want := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"q":"a/b","n":1.50}}}`
	if got != want {
		t.Errorf("server received\n%s\nwant\n%s", got, want)
	}
	if a := parseAnswer(t, s.next()); a.Error != nil {
		t.Fatalf("answer: %+v", a.Error)
	}
	ds := decisions(d.rows(t))
	if len(ds) != 1 || ds[0]["action"] != `Action::"echo"` || ds[0]["decision"] != "allow" {
		t.Fatalf("decisions: %v", ds)
	}
	args := ds[0]["request"].(map[string]any)["context"].(map[string]any)["args"].(map[string]any)
	if args["q"] != "a/b" {
		t.Errorf("logged args %v", args)
	}
}

// TestToolsCallWithoutID: a tools/call notification is never forwarded (no
// answer could carry its outcome) and is a logged deny.
func TestToolsCallWithoutID(t *testing.T) {
	d := startDaemon(t, 0, decisionlog.DurabilityNormal)
	s := newSession(t, d, echoServer, nil)
	s.send(`{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo","arguments":{"env":"dev"}}}`)
	s.ping()
	s.expectPingOnly()
	waitFor(t, "the refusal logged", func() bool { return len(decisions(d.rows(t))) == 1 })
	ds := decisions(d.rows(t))
	if ds[0]["decision"] != "deny" || reasonOf(ds[0]) != "request_refused" || ds[0]["action"] != `Action::"echo"` {
		t.Errorf("decision %v", ds[0])
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBatches: a batch is forwarded only if every call in it is allowed;
// otherwise every request in it gets -32600 and the server sees nothing.
func TestBatches(t *testing.T) {
	d := startDaemon(t, 0, decisionlog.DurabilityNormal)
	s := newSession(t, d, func(s *standIn, line []byte) {
		if line[0] != '[' {
			echoServer(s, line)
			return
		}
		var batch []json.RawMessage
		json.Unmarshal(line, &batch)
		var answers []json.RawMessage
		for _, el := range batch {
			var m struct{ ID json.RawMessage }
			json.Unmarshal(el, &m)
			if len(m.ID) == 0 {
				continue // a notification
			}
			answers = append(answers, json.RawMessage(fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{"content":[]}}`, m.ID)))
		}
		b, _ := json.Marshal(answers)
		s.write(b)
	}, nil)

	s.send(`[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"env":"dev"}}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"export"}}]`)
	var errs []answer
	if err := json.Unmarshal(s.next(), &errs); err != nil || len(errs) != 2 {
		t.Fatalf("want two errors for the refused batch: %v %v", errs, err)
	}
	for _, a := range errs {
		if a.Error == nil || a.Error.Code != -32600 {
			t.Errorf("batch answer %+v, want -32600", a)
		}
	}
	s.ping()
	s.expectPingOnly()
	rows := d.rows(t)
	ds := decisions(rows)
	if len(ds) != 2 || ds[0]["decision"] != "allow" || ds[1]["decision"] != "deny" {
		t.Fatalf("decisions %v", ds)
	}
	if os := outcomes(rows); len(os) != 2 || os[0]["status"] != "skipped" || os[1]["status"] != "skipped" {
		t.Errorf("outcomes %v: the allowed call of a refused batch never ran", os)
	}

	for _, batch := range []string{
		`[{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo"}},{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo"}}]`,
		`[{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","Name":"get-env"}}]`,
		`[{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo"}},{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo"}}]`,
		`[1]`,
	} {
		s.send(batch)
		var errs []answer
		if err := json.Unmarshal(s.next(), &errs); err != nil || len(errs) == 0 || errs[0].Error == nil || errs[0].Error.Code != -32600 {
			t.Errorf("batch %s: answer %v %v", batch, errs, err)
		}
		s.ping()
		s.expectPingOnly()
	}
	s.send(`[]`)
	if a := parseAnswer(t, s.next()); a.Error == nil || a.Error.Code != -32600 {
		t.Errorf("empty batch: %+v", a)
	}

	// Every call allowed: the batch goes through whole, re-encoded.
	s.send(`[{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"echo","arguments":{"env":"dev"}}}, {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}]`)
	if got := string(s.received()); got != `[{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"echo","arguments":{"env":"dev"}}},{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}]` {
		t.Errorf("server received %s", got)
	}
	var ok []answer
	if err := json.Unmarshal(s.next(), &ok); err != nil || len(ok) != 1 || ok[0].Error != nil {
		t.Fatalf("answers %v %v", ok, err)
	}
	waitFor(t, "the batch call's outcome", func() bool {
		os := outcomes(d.rows(t))
		return len(os) > 0 && os[len(os)-1]["status"] == "success"
	})
}

// TestIDsComparedAsValues: a server that re-encodes ids (as a JavaScript
// server does: 1.0 → 1, 1e1 → 10) still gets each call its outcome, and 7
// and "7" in flight together are two calls, logged apart.
func TestIDsComparedAsValues(t *testing.T) {
	d := startDaemon(t, 0, decisionlog.DurabilityNormal)
	release := make(chan struct{})
	s := newSession(t, d, func(s *standIn, line []byte) {
		var m struct {
			ID     any
			Method string
		}
		json.Unmarshal(line, &m) // numbers become float64, as in JavaScript
		if m.Method != "tools/call" || strings.Contains(string(line), `"slow"`) {
			return
		}
		go func() {
			<-release
			b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": m.ID, "result": map[string]any{"content": []any{}}})
			s.write(b)
		}()
	}, nil)
	ids := []string{`1.0`, `1e1`, `"\u0061"`, `7`, `"7"`, `-0`}
	for _, id := range ids {
		s.send(`{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"echo","arguments":{}}}`)
	}
	for range ids {
		s.received()
	}
	close(release)
	for range ids {
		if a := parseAnswer(t, s.next()); a.Error != nil {
			t.Errorf("answer %+v", a)
		}
	}
	waitFor(t, "every outcome", func() bool { return len(outcomes(d.rows(t))) == len(ids) })
	var logged []string
	for _, dd := range decisions(d.rows(t)) {
		logged = append(logged, dd["request"].(map[string]any)["tool_call_id"].(string))
	}
	want := []string{`"7"`, `"a"`, `0`, `1`, `10`, `7`}
	slices.Sort(logged)
	if strings.Join(logged, " ") != strings.Join(want, " ") {
		t.Errorf("tool_call_ids logged %v, want %v (ids as JSON values, with their type)", logged, want)
	}
	for _, o := range outcomes(d.rows(t)) {
		if o["status"] != "success" {
			t.Errorf("outcome %v", o)
		}
	}
	// An id equal as a JSON value to one in flight is refused.
	s.send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"slow"}}`)
	s.received()
	s.send(`{"jsonrpc":"2.0","id":2.0,"method":"tools/call","params":{"name":"echo"}}`)
	if a := parseAnswer(t, s.next()); a.Error == nil || a.Error.Code != -32600 {
		t.Errorf("a second call with id 2.0 while 2 is in flight: %+v", a)
	}
}

// TestLinesOverTheLimit: a line over the proxy's limit, either way, gets a
// JSON-RPC error for its id (read as the line streams past), and neither
// side blocks.
func TestLinesOverTheLimit(t *testing.T) {
	d := startDaemon(t, 0, decisionlog.DurabilityNormal)
	s := newSession(t, d, func(s *standIn, line []byte) {
		var m struct {
			ID     json.RawMessage
			Params struct{ Name string }
		}
		json.Unmarshal(line, &m)
		if m.Params.Name == "big" {
			// the id last, as the TypeScript SDK writes it
			s.write([]byte(`{"result":{"content":[{"type":"text","text":"` + strings.Repeat("x", 3<<20) + `"}]},"jsonrpc":"2.0","id":` + string(m.ID) + `}`))
			return
		}
		echoServer(s, line)
	}, func(p *mcpproxy.Proxy) { p.MaxLineBytes = 1 << 20 })

	s.send(`{"method":"tools/call","params":{"name":"echo","arguments":{"blob":"` + strings.Repeat("a", 2<<20) + `"}},"jsonrpc":"2.0","id":41}`)
	a := parseAnswer(t, s.next())
	if a.ID != float64(41) || a.Error == nil || a.Error.Code != -32600 || !strings.Contains(a.Error.Message, "exceeds the proxy's limit") {
		t.Fatalf("over-limit line: %+v", a)
	}
	s.ping()
	s.expectPingOnly()
	waitFor(t, "the refusal logged", func() bool { return len(decisions(d.rows(t))) == 1 })
	if dd := decisions(d.rows(t))[0]; dd["decision"] != "deny" || reasonOf(dd) != "request_too_large" || dd["action"] != `Action::"echo"` {
		t.Errorf("decision %v", dd)
	}

	s.send(`{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"big"}}`)
	s.received()
	a = parseAnswer(t, s.next())
	if a.ID != float64(42) || a.Error == nil || a.Error.Code != -32603 {
		t.Fatalf("the server's over-limit answer: %+v", a)
	}
	waitFor(t, "the outcome", func() bool { return len(outcomes(d.rows(t))) == 1 })
	if o := outcomes(d.rows(t))[0]; o["status"] != "error" || !strings.Contains(fmt.Sprint(o["detail"]), "exceeds") {
		t.Errorf("outcome %v", o)
	}
	// Both streams still flow.
	s.send(`{"jsonrpc":"2.0","id":43,"method":"tools/call","params":{"name":"echo"}}`)
	s.received()
	if a := parseAnswer(t, s.next()); a.Error != nil {
		t.Errorf("after an over-limit line: %+v", a)
	}
}

// TestCancelledAndDeadServer: a cancelled call's outcome says so (MCP
// servers do not answer it), and a call whose server dies gets an error and
// an error outcome.
func TestCancelledAndDeadServer(t *testing.T) {
	d := startDaemon(t, 0, decisionlog.DurabilityNormal)
	s := newSession(t, d, func(s *standIn, line []byte) {
		if strings.Contains(string(line), `"name":"slow"`) {
			return // never answers
		}
		if strings.Contains(string(line), `"name":"crash"`) {
			s.out.Close()
			return
		}
		echoServer(s, line)
	}, nil)
	s.send(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow"}}`)
	s.received()
	s.send(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1,"reason":"user pressed stop"}}`)
	if got := string(s.received()); !strings.Contains(got, "notifications/cancelled") {
		t.Fatalf("server received %s", got)
	}
	waitFor(t, "the cancelled call's outcome", func() bool { return len(outcomes(d.rows(t))) == 1 })
	if o := outcomes(d.rows(t))[0]; o["status"] != "error" || !strings.Contains(fmt.Sprint(o["detail"]), "cancelled:true") ||
		!strings.Contains(fmt.Sprint(o["detail"]), "user pressed stop") {
		t.Errorf("cancelled outcome %v", o)
	}

	s.send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"slow"}}`)
	s.received()
	s.send(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"crash"}}`)
	s.received()
	got := map[any]int{}
	for range 2 {
		a := parseAnswer(t, s.next())
		if a.Error != nil {
			got[a.ID] = a.Error.Code
		}
	}
	if got[float64(2)] != -32603 || got[float64(3)] != -32603 {
		t.Errorf("answers after the server died: %v, want -32603 for both calls", got)
	}
	waitFor(t, "outcomes of the calls the dead server had", func() bool { return len(outcomes(d.rows(t))) == 3 })
	for _, o := range outcomes(d.rows(t))[1:] {
		if o["status"] != "error" || !strings.Contains(fmt.Sprint(o["detail"]), "exited") {
			t.Errorf("outcome %v", o)
		}
	}
}

// TestTaskOutcomes: a task-augmented call (MCP 2025-11-25) is recorded at
// its task's terminal state, not when the task is created.
func TestTaskOutcomes(t *testing.T) {
	d := startDaemon(t, 0, decisionlog.DurabilityNormal)
	s := newSession(t, d, func(s *standIn, line []byte) {
		var m struct {
			ID     json.RawMessage
			Method string
			Params struct {
				Name   string
				TaskID string `json:"taskId"`
			}
		}
		json.Unmarshal(line, &m)
		task := func(id, status string) string {
			return `{"taskId":"` + id + `","status":"` + status + `","createdAt":"2025-11-25T00:00:00Z","lastUpdatedAt":"2025-11-25T00:00:00Z","ttl":60000}`
		}
		switch m.Method {
		case "tools/call":
			s.write([]byte(`{"jsonrpc":"2.0","id":` + string(m.ID) + `,"result":{"task":` + task("task-"+m.Params.Name, "working") + `}}`))
		case "tasks/get":
			s.write([]byte(`{"jsonrpc":"2.0","id":` + string(m.ID) + `,"result":` + task(m.Params.TaskID, "working") + `}`))
		case "tasks/result":
			s.write([]byte(`{"jsonrpc":"2.0","id":` + string(m.ID) + `,"result":{"content":[],"isError":true,"_meta":{"io.modelcontextprotocol/related-task":{"taskId":"` + m.Params.TaskID + `"}}}}`))
		case "ping":
			s.write([]byte(`{"jsonrpc":"2.0","id":` + string(m.ID) + `,"result":{}}`))
		case "finish":
			s.write([]byte(`{"jsonrpc":"2.0","method":"notifications/tasks/status","params":` + task("task-echo", "completed") + `}`))
		}
	}, nil)
	s.send(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{},"task":{"ttl":60000}}}`)
	s.received()
	if a := parseAnswer(t, s.next()); !strings.Contains(string(a.Result), "working") {
		t.Fatalf("task creation: %+v %s", a.Error, a.Result)
	}
	s.send(`{"jsonrpc":"2.0","id":2,"method":"tasks/get","params":{"taskId":"task-echo"}}`)
	s.received()
	s.next()
	s.ping()
	if os := outcomes(d.rows(t)); len(os) != 0 {
		t.Fatalf("outcome recorded while the task works: %v", os)
	}
	s.send(`{"jsonrpc":"2.0","method":"finish"}`) // the stand-in's cue to finish the task
	s.received()
	if a := parseAnswer(t, s.next()); a.Method != "notifications/tasks/status" {
		t.Fatalf("relayed %+v", a)
	}
	waitFor(t, "the task's outcome", func() bool { return len(outcomes(d.rows(t))) == 1 })
	if o := outcomes(d.rows(t))[0]; o["status"] != "success" || !strings.Contains(fmt.Sprint(o["detail"]), "task-echo") {
		t.Errorf("completed task's outcome %v", o)
	}

	// A task whose result is a tool error: recorded from tasks/result.
	s.send(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"search","task":{}}}`)
	s.received()
	s.next()
	s.send(`{"jsonrpc":"2.0","id":4,"method":"tasks/result","params":{"taskId":"task-search"}}`)
	s.received()
	s.next()
	waitFor(t, "the second task's outcome", func() bool { return len(outcomes(d.rows(t))) == 2 })
	if o := outcomes(d.rows(t))[1]; o["status"] != "error" {
		t.Errorf("a task whose result isError: outcome %v", o)
	}
}

// TestCancelWaitsForItsCall: notifications/cancelled for a call still being
// authorized (here: waiting for a human, through elicitation) reaches the
// server after the call, never before it.
func TestCancelWaitsForItsCall(t *testing.T) {
	d := startDaemon(t, 0, decisionlog.DurabilityNormal)
	pingOnly := func(s *standIn, line []byte) {
		if strings.Contains(string(line), `"method":"ping"`) {
			echoServer(s, line)
		}
	}
	s := newSession(t, d, pingOnly, func(p *mcpproxy.Proxy) { p.Admin, p.Approver = d.admin, "alice" })
	s.send(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"elicitation":{}},"clientInfo":{"name":"t","version":"1"}}}`)
	s.received()
	s.send(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deploy","arguments":{"app":"web"}}}`)
	ask := parseAnswer(t, s.next())
	if ask.Method != "elicitation/create" {
		t.Fatalf("want an elicitation, got %+v", ask)
	}
	s.send(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`)
	s.ping()
	s.expectPingOnly() // the cancellation waits
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": ask.ID, "result": map[string]any{"action": "accept", "content": map[string]any{"approve": true}}})
	s.send(string(b))
	if got := string(s.received()); !strings.Contains(got, `"method":"tools/call"`) {
		t.Fatalf("server received %s first, want the call", got)
	}
	if got := string(s.received()); !strings.Contains(got, `"method":"notifications/cancelled"`) {
		t.Fatalf("server received %s, want the cancellation after the call", got)
	}
}

// TestElicitation: a client that supports elicitation is asked to approve
// a step_up; the answer is recorded as the approval.
func TestElicitation(t *testing.T) {
	d := startDaemon(t, 0, decisionlog.DurabilityNormal)
	s := newSession(t, d, echoServer, func(p *mcpproxy.Proxy) { p.Admin, p.Approver = d.admin, "alice@example.com" })
	s.send(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"capabilities":{"elicitation":{}}}}`)
	s.next()
	s.received()
	for i, approve := range []bool{true, false} {
		s.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"deploy","arguments":{"app":"web"}}}`, 10+i))
		ask := parseAnswer(t, s.next())
		if ask.Method != "elicitation/create" {
			t.Fatalf("want an elicitation, got %+v", ask)
		}
		b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": ask.ID, "result": map[string]any{"action": "accept", "content": map[string]any{"approve": approve}}})
		s.send(string(b))
		a := parseAnswer(t, s.next())
		if approve && (a.Error != nil || a.Result == nil) {
			t.Errorf("approved through elicitation, the call must run: %+v", a)
		}
		if !approve && (a.Error == nil || !strings.Contains(a.Error.Message, "declined")) {
			t.Errorf("declined: %+v", a)
		}
	}
	s.ping()
	s.received() // the approved call
	s.expectPingOnly()
}

// TestFilterTools: tools/list hides the tools the principal is denied.
func TestFilterTools(t *testing.T) {
	d := startDaemon(t, 0, decisionlog.DurabilityNormal)
	s := newSession(t, d, echoServer, func(p *mcpproxy.Proxy) { p.FilterTools = true })
	s.send(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	a := parseAnswer(t, s.next())
	var list struct{ Tools []struct{ Name string } }
	json.Unmarshal(a.Result, &list)
	if len(list.Tools) != 1 || list.Tools[0].Name != "search" {
		t.Errorf("tools/list filtered to %s, want search only (export is denied)", a.Result)
	}
}
