package mcpproxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp/mcpproxy"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// session is one proxy between a test's client and a stand-in MCP server,
// both on in-memory pipes. The server records every line it receives, so a
// test can compare what the proxy authorized with what the server got.
type session struct {
	t       testing.TB
	d       *daemon
	proxy   *mcpproxy.Proxy
	toProxy *io.PipeWriter // the client's output
	answers chan []byte    // lines the proxy sent the client
	server  *standIn
	done    chan error
}

// standIn is an MCP server on the proxy's server side. handle answers one
// received line (nil: no answer); it runs on the server's reading goroutine.
type standIn struct {
	mu       sync.Mutex
	received [][]byte
	got      chan []byte
	in       *io.PipeReader // what the proxy sends the server
	out      *io.PipeWriter // what the server answers
	outMu    sync.Mutex
	handle   func(s *standIn, line []byte)
}

func (s *standIn) write(line []byte) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	s.out.Write(append(line, '\n'))
}

func (s *standIn) lines() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.received...)
}

// echoServer answers initialize, tools/list, and tools/call with the
// arguments it received as its text; it answers nothing else.
func echoServer(s *standIn, line []byte) {
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params struct {
			Name      string          `json:"name"`
			Arguments json.RawMessage `json:"arguments"`
		} `json:"params"`
	}
	if json.Unmarshal(line, &m) != nil || len(m.ID) == 0 || m.Method == "" {
		return
	}
	var result any
	switch m.Method {
	case "initialize":
		result = map[string]any{"protocolVersion": "2025-11-25", "capabilities": map[string]any{"tools": map[string]any{}}, "serverInfo": map[string]any{"name": "stand-in", "version": "1"}}
	case "tools/list":
		result = map[string]any{"tools": []map[string]any{{"name": "search", "inputSchema": map[string]any{"type": "object"}}, {"name": "export", "inputSchema": map[string]any{"type": "object"}}}}
	case "tools/call":
		result = map[string]any{"content": []map[string]any{{"type": "text", "text": m.Params.Name + " " + string(m.Params.Arguments)}}}
	default:
		b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": m.ID, "error": map[string]any{"code": -32601, "message": "no method " + m.Method}})
		s.write(b)
		return
	}
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": m.ID, "result": result})
	s.write(b)
}

func newSession(t testing.TB, d *daemon, handle func(*standIn, []byte), tune func(*mcpproxy.Proxy)) *session {
	t.Helper()
	clientIn, toProxy := io.Pipe()
	fromProxy, clientOut := io.Pipe()
	serverIn, proxyToServer := io.Pipe()
	serverToProxy, serverOut := io.Pipe()
	p := &mcpproxy.Proxy{Client: d.client, Principal: wire.EntityRef{Type: "Agent", ID: "bot"}, Server: wire.EntityRef{Type: "MCPServer", ID: "stand-in"}}
	if testing.Verbose() {
		p.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if tune != nil {
		tune(p)
	}
	s := &session{t: t, d: d, proxy: p, toProxy: toProxy, answers: make(chan []byte, 1024), done: make(chan error, 1),
		server: &standIn{in: serverIn, out: serverOut, handle: handle, got: make(chan []byte, 1024)}}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		s.done <- p.Run(ctx, clientIn, clientOut, proxyToServer, serverToProxy)
		clientOut.Close()
	}()
	go func() { // the client's reader
		r := bufio.NewReaderSize(fromProxy, 1<<20)
		for {
			line, err := r.ReadBytes('\n')
			if len(line) > 0 {
				s.answers <- []byte(strings.TrimSuffix(string(line), "\n"))
			}
			if err != nil {
				close(s.answers)
				return
			}
		}
	}()
	go func() { // the server
		r := bufio.NewReaderSize(serverIn, 1<<20)
		for {
			line, err := r.ReadBytes('\n')
			if len(line) > 0 {
				line = []byte(strings.TrimSuffix(string(line), "\n"))
				s.server.mu.Lock()
				s.server.received = append(s.server.received, line)
				s.server.mu.Unlock()
				s.server.got <- line
				if s.server.handle != nil {
					s.server.handle(s.server, line)
				}
			}
			if err != nil {
				serverOut.Close()
				return
			}
		}
	}()
	t.Cleanup(func() {
		toProxy.Close()
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			t.Errorf("proxy did not stop after its client closed")
		}
		cancel()
	})
	return s
}

// send writes one raw line from the client.
func (s *session) send(line string) {
	s.t.Helper()
	if _, err := s.toProxy.Write([]byte(line + "\n")); err != nil {
		s.t.Fatalf("send: %v", err)
	}
}

// next is the proxy's next line to the client.
func (s *session) next() []byte {
	s.t.Helper()
	select {
	case b, ok := <-s.answers:
		if !ok {
			s.t.Fatal("the proxy closed the client's stream")
		}
		return b
	case <-time.After(120 * time.Second):
		s.t.Fatal("no answer from the proxy")
	}
	return nil
}

// received waits for the server's next received line.
func (s *session) received() []byte {
	s.t.Helper()
	select {
	case b := <-s.server.got:
		return b
	case <-time.After(120 * time.Second):
		s.t.Fatal("the server received nothing")
	}
	return nil
}

// rows returns the log's decisions and outcomes, in seq order.
func (d *daemon) rows(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	err := d.log.Scan(context.Background(), 1, func(e *decisionlog.Entry) error {
		if e.Kind != "decision" && e.Kind != "outcome" {
			return nil
		}
		var m map[string]any
		if err := json.Unmarshal(e.Body, &m); err != nil {
			return err
		}
		m["kind"] = string(e.Kind)
		out = append(out, m)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func newLinePipe() (*bufio.Reader, *io.PipeWriter) {
	r, w := io.Pipe()
	return bufio.NewReader(r), w
}

// close ends the client's stream and waits for the proxy to finish: every
// call read has been forwarded or refused, and every answer relayed.
func (s *session) close() {
	s.t.Helper()
	s.toProxy.Close()
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Errorf("proxy: %v", err)
		}
		s.done <- err // for the cleanup
	case <-time.After(60 * time.Second):
		s.t.Fatal("the proxy did not stop after its client closed")
	}
	for range s.answers { // drain
	}
}
