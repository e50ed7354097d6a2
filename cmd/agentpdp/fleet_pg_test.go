package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/decisionlog/fleet"
	"github.com/agentpdp/agentpdp/internal/pgtest"
)

// collectorProc is agentpdp collector as a child process.
type collectorProc struct {
	cmd    *exec.Cmd
	addr   string
	stderr *lockedWriter
	done   chan struct{}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startCollectorProc(t *testing.T, config string, addr string) *collectorProc {
	t.Helper()
	c := &collectorProc{addr: addr, stderr: &lockedWriter{w: &bytes.Buffer{}}, done: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], "collector", "--config", config)
	c.cmd.Env = append(os.Environ(), "AGENTPDP_TEST_MAIN=1")
	c.cmd.Stderr = c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.done
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return c
			}
		}
		select {
		case <-c.done:
			t.Fatalf("collector exited:\n%s", c.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector did not answer:\n%s", c.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// roundRobin is a load balancer over collectors: each request goes to the
// next one, and a collector that is down answers 502, which the sink
// retries, reaching the other.
func roundRobin(addrs ...string) http.Handler {
	var n atomic.Uint64
	return &httputil.ReverseProxy{
		ErrorLog: log.New(io.Discard, "", 0),
		Rewrite: func(r *httputil.ProxyRequest) {
			u, _ := url.Parse("http://" + addrs[n.Add(1)%uint64(len(addrs))])
			r.SetURL(u)
		},
	}
}

// Three daemons ship at once through a load balancer to two collectors on
// one PostgreSQL; one collector is killed while they ship. Every row
// arrives once, every chain verifies, each host keeps its cosignatures and
// passes log verify --witness; then a host's log rewritten and re-signed
// with its own key, or cut, fails log verify --witness, and the collector
// raises a rollback when the rewritten log ships again.
func TestFleet_ThreeDaemonsTwoCollectors(t *testing.T) {
	if !pgtest.Enabled() {
		t.Skip("PostgreSQL tests run under make test-pg (AGENTPDP_PG=1)")
	}
	pg := pgtest.Start(t)
	dir := t.TempDir()
	wkey := filepath.Join(dir, "collector.key")
	must(t, writeKeyPair(wkey, false))

	addrs := []string{freeAddr(t), freeAddr(t)}
	lb := httptest.NewServer(roundRobin(addrs...))
	defer lb.Close()

	var daemons []*daemon
	var origins strings.Builder
	for i := range 3 {
		d := newDaemonDir(t)
		origin := fmt.Sprintf("host-%d", i)
		must(t, writeKeyPair(filepath.Join(d.dir, "var", "signing.key"), false))
		token := filepath.Join(d.dir, "host.token")
		must(t, os.WriteFile(token, []byte(fmt.Sprintf("token-%d-secret\n", i)), 0o600))
		cfg, err := os.ReadFile(d.config)
		must(t, err)
		cfg = fmt.Appendf(cfg, "origin: %s\ncheckpoints: {every_rows: 100, every: 300ms}\nsinks:\n  - {name: fleet, type: http, url: %q, token_file: %s, witness: true, batch_size: 50}\n",
			origin, lb.URL+"/v1/ingest", token)
		must(t, os.WriteFile(d.config, cfg, 0o644))
		fmt.Fprintf(&origins, "  - {origin: %s, pubkey: %s, token_file: %s}\n", origin, filepath.Join(d.dir, "var", "signing.key.pub"), token)
		daemons = append(daemons, d)
	}
	var collectors []*collectorProc
	for i, addr := range addrs {
		config := filepath.Join(dir, fmt.Sprintf("collector-%d.yaml", i))
		must(t, os.WriteFile(config, fmt.Appendf(nil, "listen: %s\npostgres: %q\nwitness_key: %s\nwitness_name: fleet-witness\norigins:\n%s",
			addr, pg.DSN, wkey, origins.String()), 0o644))
		collectors = append(collectors, startCollectorProc(t, config, addr))
	}

	for _, d := range daemons {
		d.start()
	}
	stops := make([]func(), 0, 3)
	for _, d := range daemons {
		finish := startLoad(t, d.sock(), 2)
		stops = append(stops, func() { finish() })
	}
	time.Sleep(700 * time.Millisecond)
	collectors[0].cmd.Process.Signal(syscall.SIGKILL) // in the middle of whatever it was doing
	<-collectors[0].done
	time.Sleep(700 * time.Millisecond)
	for _, stop := range stops {
		stop()
	}

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.DSN)
	must(t, err)
	defer conn.Close(ctx)
	// Wait until each origin is verified through its log's last row: the
	// interval checkpoint after the load, and its cosignature row, ship too.
	deadline := time.Now().Add(60 * time.Second)
	shipped := make([]int64, len(daemons))
	for i, d := range daemons {
		origin := fmt.Sprintf("host-%d", i)
		for {
			r, err := decisionlog.OpenReader(d.db())
			must(t, err)
			last, err := r.LastSeq(ctx)
			r.Close()
			must(t, err)
			var verified, witnessed int64
			err = conn.QueryRow(ctx, `SELECT verified_seq, witnessed_size FROM fleet_origins WHERE origin = $1`, origin).Scan(&verified, &witnessed)
			if err == nil && verified == last && witnessed > 0 {
				shipped[i] = last
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: verified %d of %d rows (%v)\n%s", origin, verified, last, err, d.stderr)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	for _, d := range daemons {
		d.cmd.Process.Signal(syscall.SIGTERM)
		<-d.done
	}

	// Every row once, as the host wrote it.
	for i, d := range daemons {
		origin := fmt.Sprintf("host-%d", i)
		r, err := decisionlog.OpenReader(d.db())
		must(t, err)
		cosigs := 0
		err = r.Scan(ctx, 1, func(e *decisionlog.Entry) error {
			var h []byte
			if err := conn.QueryRow(ctx, `SELECT hash FROM fleet_rows WHERE origin = $1 AND seq = $2`, origin, e.Seq).Scan(&h); err != nil {
				if e.Seq <= shipped[i] { // rows the stop wrote after it need not have shipped
					return fmt.Errorf("seq %d: %w", e.Seq, err)
				}
			} else if !bytes.Equal(h, e.Hash) {
				return fmt.Errorf("seq %d: stored hash differs", e.Seq)
			}
			if e.Kind == decisionlog.KindCosignature {
				cosigs++
			}
			return nil
		})
		r.Close()
		must(t, err)
		var rows, distinct int64
		must(t, conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT seq) FROM fleet_rows WHERE origin = $1`, origin).Scan(&rows, &distinct))
		if rows != distinct {
			t.Fatalf("%s: %d rows stored for %d seqs", origin, rows, distinct)
		}
		if cosigs == 0 {
			t.Errorf("%s: no cosignature row in the host's log", origin)
		}
	}
	code, out, stderr := runCLI(t, "fleet", "verify", "--pg", pg.DSN)
	if code != 0 || strings.Count(out, "ok ") != 3 {
		t.Fatalf("fleet verify: %d\n%s%s", code, out, stderr)
	}
	if code, out, _ := runCLI(t, "fleet", "events", "--pg", pg.DSN); code != 0 {
		t.Fatalf("fleet events after a clean run: %d\n%s", code, out)
	}
	if code, out, stderr := runCLI(t, "fleet", "query", "--pg", pg.DSN, "--decision", "allow", "--limit", "5"); code != 0 || !strings.Contains(out, "host-") {
		t.Fatalf("fleet query: %d\n%s%s", code, out, stderr)
	}
	if code, out, stderr := runCLI(t, "fleet", "stats", "--pg", pg.DSN); code != 0 || strings.Count(out, "host-") < 3 {
		t.Fatalf("fleet stats: %d\n%s%s", code, out, stderr)
	}

	witnessURL := "http://" + addrs[1]
	d := daemons[0]
	pub := filepath.Join(d.dir, "var", "signing.key.pub")
	if code, out, stderr := runCLI(t, "log", "verify", "--db", d.db(), "--pubkey", pub, "--witness", witnessURL, "--witness-key", wkey+".pub"); code != 0 || !strings.Contains(out, "fleet-witness cosigned") {
		t.Fatalf("log verify --witness on an intact log: %d\n%s%s", code, out, stderr)
	}
	// The wrong witness key fails.
	other := filepath.Join(dir, "other.key")
	must(t, writeKeyPair(other, false))
	if code, _, stderr := runCLI(t, "log", "verify", "--db", d.db(), "--pubkey", pub, "--witness", witnessURL, "--witness-key", other+".pub"); code != exitFail {
		t.Fatalf("another witness key: %d %s", code, stderr)
	}

	// Cut: the rows after the first checkpoint deleted, as root could.
	cut := filepath.Join(dir, "cut.db")
	copyFile(t, d.db(), cut)
	db, err := sql.Open("sqlite3", cut)
	must(t, err)
	_, err = db.Exec(`DROP TRIGGER IF EXISTS log_no_delete; DELETE FROM log WHERE seq > (SELECT min(seq) FROM log WHERE kind = 'checkpoint')`)
	must(t, err)
	db.Close()
	if code, out, stderr := runCLI(t, "log", "verify", "--db", cut, "--pubkey", pub, "--witness", witnessURL, "--witness-key", wkey+".pub"); code != exitFail {
		t.Fatalf("log verify --witness on a cut log: %d\n%s%s", code, out, stderr)
	} else {
		t.Logf("a cut log: %s", stderr)
	}

	// Rewritten: a new log of the same origin, signed with the host's own
	// key, in place of the old one. It verifies alone, not against the witness.
	priv, err := os.ReadFile(filepath.Join(d.dir, "var", "signing.key"))
	must(t, err)
	key, err := decisionlog.ParsePrivateKey(priv)
	must(t, err)
	must(t, os.Rename(d.db(), d.db()+".orig"))
	for _, suffix := range []string{"-wal", "-shm", "-index", "-state", ".lock", ".state"} {
		os.Remove(d.db() + suffix)
	}
	l, err := decisionlog.Open(ctx, d.db(), decisionlog.Options{SigningKey: key, Origin: "host-0", CheckpointEvery: 10})
	must(t, err)
	// Longer than the witnessed tree, so that only its root can tell.
	var witnessedSize int64
	must(t, conn.QueryRow(ctx, `SELECT witnessed_size FROM fleet_origins WHERE origin = 'host-0'`).Scan(&witnessedSize))
	for i := int64(0); i < witnessedSize+50; i += 100 {
		var es []*decisionlog.Entry
		for j := i; j < i+100; j++ {
			body := fmt.Sprintf(`{"decision_id":"forged-%d","decision":"allow","principal":"Agent::\"x\""}`, j)
			es = append(es, &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: []byte(body)})
		}
		must(t, l.Append(ctx, es...))
	}
	must(t, l.Close(ctx))
	if code, out, stderr := runCLI(t, "log", "verify", "--db", d.db(), "--pubkey", pub); code != 0 {
		t.Fatalf("the rewritten log should verify on its own: %d\n%s%s", code, out, stderr)
	}
	if code, out, stderr := runCLI(t, "log", "verify", "--db", d.db(), "--pubkey", pub, "--witness", witnessURL, "--witness-key", wkey+".pub"); code != exitFail {
		t.Fatalf("log verify --witness on a rewritten log: %d\n%s%s", code, out, stderr)
	} else {
		t.Logf("a rewritten log: %s", stderr)
	}
	// The host ships again: the collector raises a rollback. (--once stops
	// at the first failure, and every other request meets the dead collector.)
	for range 4 {
		runCLI(t, "ship", "--db", d.db(), "--config", d.config, "--once")
	}
	code, out, _ = runCLI(t, "fleet", "events", "--pg", pg.DSN, "--origin", "host-0", "--json")
	if code != exitFail || !strings.Contains(out, `"kind":"rollback"`) {
		t.Fatalf("fleet events after the rewritten log shipped: %d\n%s", code, out)
	}
	var halted *string
	must(t, conn.QueryRow(ctx, `SELECT halted FROM fleet_origins WHERE origin = 'host-0'`).Scan(&halted))
	if halted == nil {
		t.Fatal("host-0's verification did not halt")
	}
	_ = fleet.EventRollback
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	must(t, err)
	must(t, os.WriteFile(to, b, 0o600))
}
