package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/agentpdp/agentpdp/internal/plural"
	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// benchResult is what agentpdp bench measured.
type benchResult struct {
	Clients   int     `json:"clients"`
	Seconds   float64 `json:"seconds"`
	Decisions int     `json:"decisions"`
	PerSecond float64 `json:"decisions_per_second"`
	P50       float64 `json:"p50_ms"`
	P90       float64 `json:"p90_ms"`
	P99       float64 `json:"p99_ms"`
	P999      float64 `json:"p99_9_ms"`
	Max       float64 `json:"max_ms"`
	// Errors counts failed requests by kind (errorKind: the HTTP status
	// and the message with quoted values and numbers generalised);
	// ErrorExamples holds one message of each kind as it was.
	Errors         map[string]int    `json:"errors"`
	ErrorExamples  map[string]string `json:"error_examples,omitempty"`
	ByDecision     map[string]int    `json:"by_decision"`
	ServerCPU      float64           `json:"server_cpu_us_per_decision,omitempty"`
	ServerPeakRSS  float64           `json:"server_peak_rss_mb,omitempty"`
	LogBytesPerRow float64           `json:"log_bytes_per_decision,omitempty"`
	ClientCPU      float64           `json:"bench_cpu_us_per_decision"`
}

// benchCmd is agentpdp bench: load on a running daemon, measured.
type benchCmd struct {
	streams
	socket, admin, requests string
	clients                 int
	duration, warmup        time.Duration
	asJSON, failOnError     bool
}

func newBenchCmd() *cobra.Command {
	c := &benchCmd{}
	cmd := &cobra.Command{
		Use:   "bench --socket PATH [-c CLIENTS] [-d DURATION] [--requests FILE]",
		Short: "Load a running daemon: decisions/s, latency percentiles, its CPU per decision and peak memory",
		Args:  noArgs,
		RunE:  runE(c, nil),
	}
	fl := cmd.Flags()
	fl.StringVar(&c.socket, "socket", DefaultConfig().Socket, "the daemon's decision socket")
	fl.StringVar(&c.admin, "admin-socket", "", "the same daemon's admin socket, for its log size (default: beside --socket, X-admin.sock or admin.sock)")
	fl.BoolVar(&c.failOnError, "fail-on-error", false, "exit 1 if any request failed")
	fl.IntVarP(&c.clients, "clients", "c", 64, "concurrent clients, each with its own connection")
	fl.DurationVarP(&c.duration, "duration", "d", 10*time.Second, "how long to measure")
	fl.DurationVar(&c.warmup, "warmup", time.Second, "how long to load the daemon before measuring")
	fl.StringVar(&c.requests, "requests", "", "a JSONL `file` of requests to cycle through (default: a built-in mix of agent tool calls)")
	fl.BoolVar(&c.asJSON, "json", false, "one JSON object")
	return cmd
}

func (c *benchCmd) Run(ctx context.Context) error {
	if c.clients < 1 || c.duration <= 0 || c.warmup < 0 {
		return usagef("bench: -c and -d must be positive, --warmup not negative")
	}
	reqs := agentToolCalls(1)
	if c.requests != "" {
		var err error
		if reqs, err = readRequests(c.requests); err != nil {
			return err
		}
	}
	admin, err := sameDaemon(ctx, c.socket, c.admin)
	if err != nil {
		return err
	}
	res, err := runBench(ctx, c.socket, admin, c.clients, c.warmup, c.duration, reqs, progressLine(c.stderr, c.asJSON))
	if err != nil {
		return err
	}
	if c.asJSON {
		err = json.NewEncoder(c.stdout).Encode(res)
	} else {
		printBench(c.stdout, res)
	}
	if n := errorCount(res); err == nil && n > 0 && c.failOnError {
		return exitError{exitFail, fmt.Errorf("bench: %s failed (--fail-on-error)", plural.Count(n, "request", "requests"))}
	}
	return err
}

func errorCount(res *benchResult) int {
	n := 0
	for _, k := range res.Errors {
		n += k
	}
	return n
}

// sameDaemon finds the admin socket of the daemon serving socket: admin if
// given, else the one beside it (agentpdp.sock → agentpdp-admin.sock, or
// admin.sock). The figures bench reads there must be that daemon's, so the
// admin socket's pid must be the one the kernel reports for the decision
// socket's peer (SO_PEERCRED).
func sameDaemon(ctx context.Context, socket, admin string) (string, error) {
	pid, err := peerPID(socket)
	if err != nil {
		return "", fmt.Errorf("bench: no daemon on %s (%v); start one (agentpdp serve) or give its --socket", socket, err)
	}
	if admin == "" {
		dir, base := filepath.Split(socket)
		for _, cand := range []string{strings.TrimSuffix(base, ".sock") + "-admin.sock", "admin.sock"} {
			if p := filepath.Join(dir, cand); fileExists(p) {
				admin = p
				break
			}
		}
		if admin == "" {
			return "", usagef("bench: no admin socket beside %s; give the same daemon's --admin-socket", socket)
		}
	}
	st := readDaemon(ctx, admin)
	for try := 0; st.pid == 0 && try < 5 && ctx.Err() == nil; try++ {
		time.Sleep(200 * time.Millisecond) // a daemon under load answers late
		st = readDaemon(ctx, admin)
	}
	if st.pid == 0 {
		return "", fmt.Errorf("bench: no status from the admin socket %s; is the daemon on %s running? give its --admin-socket", admin, socket)
	}
	if st.pid != pid {
		return "", usagef("bench: %s is served by pid %d but %s by pid %d: give the admin socket of the daemon on %s with --admin-socket", socket, pid, admin, st.pid, socket)
	}
	return admin, nil
}

// peerPID is the pid of the process serving the Unix socket at path.
func peerPID(path string) (int, error) {
	conn, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	raw, err := conn.(*net.UnixConn).SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if credErr != nil {
		return 0, credErr
	}
	return int(cred.Pid), nil
}

func progressLine(w io.Writer, quiet bool) func(string) {
	f, ok := w.(*os.File)
	if quiet || !ok || !isTerminal(f) {
		return nil
	}
	return func(s string) { fmt.Fprintf(f, "\r%-60s", s) }
}

// readRequests reads a JSONL file of requests, each checked the way the
// daemon decodes it and then sent exactly as written.
func readRequests(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for line := 1; sc.Scan(); line++ {
		if len(strings.TrimSpace(sc.Text())) == 0 {
			continue
		}
		if _, err := wire.DecodeRequest(sc.Bytes()); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		out = append(out, slices.Clone(sc.Bytes()))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no requests", path)
	}
	return out, sc.Err()
}

// agentToolCalls is the built-in mix: agents with a team and a trust level
// call tools with a classification, an environment and a writes flag; both
// go inline with every request, as agent frameworks send them, each tool
// in the default pack's catalog (request_entities: trusted lets a request
// say so). Against the default pack it gives allow, deny and step_up.
func agentToolCalls(seed uint64) [][]byte {
	teams := []string{"finance", "platform"}
	trusts := []string{"standard", "standard", "high", "low", "untrusted"}
	classes := []string{"public", "internal", "confidential", "restricted"}
	envs := []string{"dev", "staging", "production"}
	const agents, tools = 50, 20
	reqs := make([][]byte, 1000)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range reqs {
		a, t := r.IntN(agents), r.IntN(tools)
		team := teams[a%len(teams)]
		agent := fmt.Sprintf(`{"uid":{"type":"Agent","id":"agent-%d"},"parents":[{"type":"Team","id":%q}],"attrs":{"owner":{"__entity":{"type":"User","id":"owner-%d@example.com"}},"trust":%q}}`,
			a, team, a%7, trusts[a%len(trusts)])
		tool := fmt.Sprintf(`{"uid":{"type":"Tool","id":"tool-%d"},"parents":[{"type":"ToolCatalog","id":"default"}],"attrs":{"classification":%q,"environment":%q,"writes":%v,"owner_team":{"__entity":{"type":"Team","id":%q}},"shared":%v}}`,
			t, classes[t%len(classes)], envs[t%len(envs)], t%3 == 0, teams[t%len(teams)], t%5 == 0)
		body := fmt.Sprintf(`{"principal":{"type":"Agent","id":"agent-%d"},"action":{"type":"Action","id":"invoke_tool"},"resource":{"type":"Tool","id":"tool-%d"},
			"context":{"args":{"query":"select * from t where id = %d","limit":%d}},"entities":[%s,%s],"session_id":"s-%d","trace_id":"%032x"}`,
			a, t, i, 10+i%90, agent, tool, a, r.Uint64())
		if _, err := wire.DecodeRequest([]byte(body)); err != nil {
			panic(err) // the generator's own requests are well formed
		}
		reqs[i] = []byte(body)
	}
	return reqs
}

type daemonStats struct {
	pid      int
	cpuTicks int64
	logBytes int64
	rows     int64
}

// readDaemon reads the daemon's pid and log size over the admin socket and
// its CPU time from /proc; zero values where it cannot.
func readDaemon(ctx context.Context, admin string) daemonStats {
	var st struct {
		PID int `json:"pid"`
		Log struct {
			Bytes      int64 `json:"bytes"`
			IndexBytes int64 `json:"index_bytes"`
			Rows       int64 `json:"rows"`
		} `json:"log"`
	}
	if admin == "" || client.New(admin).Do(ctx, http.MethodGet, "/v1/status", nil, &st) != nil {
		return daemonStats{}
	}
	ds := daemonStats{pid: st.PID, logBytes: st.Log.Bytes + st.Log.IndexBytes, rows: st.Log.Rows}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", st.PID)); err == nil {
		// Fields after the parenthesised command: utime and stime are 14 and 15.
		if i := strings.LastIndexByte(string(b), ')'); i > 0 {
			f := strings.Fields(string(b)[i+2:])
			if len(f) > 13 {
				u, _ := strconv.ParseInt(f[11], 10, 64)
				s, _ := strconv.ParseInt(f[12], 10, 64)
				ds.cpuTicks = u + s
			}
		}
	}
	return ds
}

func peakRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// runBench loads the daemon for warmup and then d, and measures only d:
// the first second of a run pays for connections, caches and a growing
// database, and is not what a daemon that has been up for a while does.
func runBench(ctx context.Context, socket, admin string, clients int, warmup, d time.Duration, reqs [][]byte, progress func(string)) (*benchResult, error) {
	if _, err := client.New(socket).Health(ctx); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, warmup+d)
	defer cancel()
	from := time.Now().Add(warmup)
	var before daemonStats
	var selfBefore time.Duration
	measuring := make(chan struct{})
	go func() {
		time.Sleep(time.Until(from))
		before, selfBefore = readDaemon(ctx, admin), selfCPU()
		close(measuring)
	}()
	var next atomic.Int64
	var done atomic.Int64
	lat := make([][]time.Duration, clients)
	errs := make([]errorTallies, clients)
	decisions := make([]map[string]int, clients)
	start := time.Now()
	stopProgress := make(chan struct{})
	var wg sync.WaitGroup
	if progress != nil {
		wg.Go(func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-stopProgress:
					return
				case <-t.C:
					if time.Now().Before(from) {
						progress(fmt.Sprintf("%4.0fs  warming up", time.Since(start).Seconds()))
						continue
					}
					el := time.Since(from).Seconds()
					progress(fmt.Sprintf("%4.0fs  %s  %.0f/s", el, plural.Count(done.Load(), "decision", "decisions"), float64(done.Load())/el))
				}
			}
		})
	}
	deadline, _ := ctx.Deadline()
	var clientsWG sync.WaitGroup
	for c := range clients {
		errs[c], decisions[c] = errorTallies{}, map[string]int{}
		clientsWG.Go(func() {
			var conn *benchConn
			defer func() {
				if conn != nil {
					conn.Close()
				}
			}()
			running := func() bool { return ctx.Err() == nil && time.Now().Before(deadline) }
			for running() {
				if conn == nil {
					var err error
					if conn, err = dialBench(ctx, socket, deadline); err != nil {
						if running() {
							errs[c].add(err)
							time.Sleep(10 * time.Millisecond) // a daemon that refuses is not hammered
						}
						continue
					}
				}
				body := reqs[int(next.Add(1))%len(reqs)]
				t0 := time.Now()
				dec, err := conn.authorize(body)
				if err != nil {
					if running() {
						errs[c].add(err)
					}
					var answered *client.Error
					if !errors.As(err, &answered) {
						conn.Close()
						conn = nil
					}
					continue
				}
				if t0.Before(from) {
					continue // warming up
				}
				lat[c] = append(lat[c], time.Since(t0))
				decisions[c][dec]++
				done.Add(1)
			}
		})
	}
	clientsWG.Wait()
	<-measuring
	elapsed := time.Since(from)
	close(stopProgress)
	wg.Wait()
	if progress != nil {
		progress("")
		fmt.Fprintln(os.Stderr)
	}
	after, selfAfter := readDaemon(context.WithoutCancel(ctx), admin), selfCPU()

	res := &benchResult{Clients: clients, Seconds: elapsed.Seconds(), Errors: map[string]int{}, ErrorExamples: map[string]string{}, ByDecision: map[string]int{}}
	var all []time.Duration
	for c := range clients {
		all = append(all, lat[c]...)
		for kind, t := range errs[c] {
			res.Errors[kind] += t.count
			if _, ok := res.ErrorExamples[kind]; !ok {
				res.ErrorExamples[kind] = t.example
			}
		}
		for k, v := range decisions[c] {
			res.ByDecision[k] += v
		}
	}
	res.Decisions = len(all)
	if res.Decisions == 0 {
		return res, fmt.Errorf("bench: no decisions answered; errors:\n%s", strings.TrimSuffix(errorSummary(res), "\n"))
	}
	res.PerSecond = float64(res.Decisions) / elapsed.Seconds()
	res.ClientCPU = float64((selfAfter - selfBefore).Microseconds()) / float64(res.Decisions)
	slices.Sort(all)
	ms := func(q float64) float64 {
		return float64(all[min(len(all)-1, int(q*float64(len(all))))].Microseconds()) / 1000
	}
	res.P50, res.P90, res.P99, res.P999, res.Max = ms(0.5), ms(0.9), ms(0.99), ms(0.999), ms(1)
	if after.pid != 0 && after.pid == before.pid {
		const ticksPerSecond = 100 // USER_HZ on Linux
		res.ServerCPU = float64(after.cpuTicks-before.cpuTicks) / ticksPerSecond * 1e6 / float64(res.Decisions)
		res.ServerPeakRSS = peakRSS(after.pid)
		if rows := after.rows - before.rows; rows > 0 {
			res.LogBytesPerRow = float64(after.logBytes-before.logBytes) / float64(rows)
		}
	}
	return res, nil
}

func printBench(w io.Writer, r *benchResult) {
	fmt.Fprintf(w, "%s, %.1fs: %s, %.0f decisions/s\n", plural.Count(r.Clients, "client", "clients"), r.Seconds, plural.Count(r.Decisions, "decision", "decisions"), r.PerSecond)
	fmt.Fprintf(w, "latency ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n", r.P50, r.P90, r.P99, r.P999, r.Max)
	fmt.Fprintf(w, "decisions: allow %d, deny %d, step_up %d\n", r.ByDecision[string(wire.Allow)], r.ByDecision[string(wire.Deny)], r.ByDecision[string(wire.StepUp)])
	if r.ServerCPU > 0 {
		fmt.Fprintf(w, "daemon: %.1f µs CPU per decision, peak RSS %.1f MB, log %.0f bytes per decision\n", r.ServerCPU, r.ServerPeakRSS, r.LogBytesPerRow)
	}
	fmt.Fprintf(w, "bench itself: %.1f µs CPU per decision\n", r.ClientCPU)
	io.WriteString(w, errorSummary(r))
	fmt.Fprintf(w, "errors: %d\n", errorCount(r))
}

// selfCPU is this process's CPU time so far, to report what the load
// generator itself costs: on a shared machine it is CPU the daemon lacks.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchConn speaks HTTP/1.1 on one kept-alive connection with the request
// bytes prepared in advance. A load generator sharing the daemon's cores
// must cost little per request, or it measures itself: net/http's client
// and re-encoding each request cost about as much CPU as the daemon.
type benchConn struct {
	net.Conn
	r   *bufio.Reader
	buf []byte
}

func dialBench(ctx context.Context, socket string, deadline time.Time) (*benchConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, err
	}
	// The run's end unblocks a request in flight; one still unanswered by
	// then is not counted.
	c.SetDeadline(deadline)
	return &benchConn{Conn: c, r: bufio.NewReaderSize(c, 16<<10)}, nil
}

// authorize sends one request and returns the decision, or a *client.Error
// for an answer other than 200 (the connection stays usable).
func (c *benchConn) authorize(body []byte) (string, error) {
	c.buf = append(c.buf[:0], "POST /v1/authorize HTTP/1.1\r\nHost: agentpdp\r\nContent-Type: application/json\r\nContent-Length: "...)
	c.buf = strconv.AppendInt(c.buf, int64(len(body)), 10)
	c.buf = append(c.buf, "\r\n\r\n"...)
	c.buf = append(c.buf, body...)
	if _, err := c.Write(c.buf); err != nil {
		return "", err
	}
	status, answer, err := c.readAnswer()
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		var out struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal(answer, &out); err != nil {
			return "", fmt.Errorf("answer %d: %w", status, err)
		}
		return "", &client.Error{Status: status, Message: out.Error}
	}
	// The one field the bench counts, found without decoding the rest.
	const key = `"decision":"`
	i := bytes.Index(answer, []byte(key))
	if i < 0 {
		return "", fmt.Errorf("answer 200 without a decision: %.80s", answer)
	}
	d, _, ok := bytes.Cut(answer[i+len(key):], []byte(`"`))
	if !ok {
		return "", fmt.Errorf("answer 200 with a broken decision: %.80s", answer)
	}
	return string(d), nil
}

// readAnswer reads one HTTP/1.1 response into c.buf: its status and body.
// The daemon always sends Content-Length; an answer without one is an error
// here rather than a reason to carry net/http's parser.
func (c *benchConn) readAnswer() (int, []byte, error) {
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return 0, nil, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, nil, fmt.Errorf("not an HTTP/1.1 status line: %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, fmt.Errorf("status line %q: %w", line, err)
	}
	length := -1
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, nil, err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			break
		}
		if name, value, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(name, []byte("Content-Length")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(value))); err != nil || length < 0 {
				return 0, nil, fmt.Errorf("bad Content-Length %q", value)
			}
		}
	}
	if length < 0 {
		return 0, nil, errors.New("answer without Content-Length")
	}
	c.buf = slices.Grow(c.buf[:0], length)[:length]
	if _, err := io.ReadFull(c.r, c.buf); err != nil {
		return 0, nil, err
	}
	return status, c.buf, nil
}
