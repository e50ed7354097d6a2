// Package spiretest runs a real SPIRE server and agent (built by
// .ci/setup-spire.sh) on loopback and Unix sockets in a temporary
// directory, for the tests behind `make test-spire`: the unix workload
// attestor registers the test's own uid, so the test process can fetch
// JWT-SVIDs from the agent's Workload API.
package spiretest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// Version is the SPIRE release the setup script builds.
const Version = "v1.13.3"

// TrustDomain is the trust domain the test server runs.
const TrustDomain = "example.org"

// Bin finds the directory holding spire-server and spire-agent: $SPIRE_BIN,
// else the setup script's default cache directory.
func Bin(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("SPIRE_BIN")
	if dir == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			home, _ := os.UserHomeDir()
			cache = filepath.Join(home, ".cache")
		}
		dir = filepath.Join(cache, "agentpdp", "spire-"+Version)
	}
	for _, b := range []string{"spire-server", "spire-agent"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			t.Fatalf("%s not built in %s: run .ci/setup-spire.sh (make test-spire does): %v", b, dir, err)
		}
	}
	return dir
}

// SPIRE is a running server and agent.
type SPIRE struct {
	Dir         string // the temporary directory holding configs, data and sockets
	AgentSocket string // the Workload API socket: unix://<AgentSocket>
	bin         string
	serverSock  string
	t           testing.TB
}

// WorkloadAPI is the agent's Workload API address, as go-spiffe wants it.
func (s *SPIRE) WorkloadAPI() string { return "unix://" + s.AgentSocket }

// Start runs a server and an agent attested with a join token, and waits
// until both are healthy. They are stopped at the test's cleanup.
func Start(t testing.TB) *SPIRE {
	t.Helper()
	bin := Bin(t)
	// Unix socket paths are limited to 108 bytes: a short directory, not
	// t.TempDir's long one.
	dir, err := os.MkdirTemp("", "spire")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &SPIRE{Dir: dir, AgentSocket: filepath.Join(dir, "agent.sock"), serverSock: filepath.Join(dir, "server.sock"), bin: bin, t: t}
	port := freePort(t)
	write(t, filepath.Join(dir, "server.conf"), fmt.Sprintf(`server {
  bind_address = "127.0.0.1"
  bind_port = "%d"
  socket_path = %q
  trust_domain = %q
  data_dir = %q
  log_level = "DEBUG"
  default_jwt_svid_ttl = "5m"
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = %q
    }
  }
  KeyManager "memory" {
    plugin_data {}
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
}
`, port, s.serverSock, TrustDomain, filepath.Join(dir, "server-data"), filepath.Join(dir, "server-data", "datastore.sqlite3")))
	write(t, filepath.Join(dir, "agent.conf"), fmt.Sprintf(`agent {
  data_dir = %q
  log_level = "DEBUG"
  server_address = "127.0.0.1"
  server_port = "%d"
  socket_path = %q
  trust_domain = %q
  insecure_bootstrap = true
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }
  WorkloadAttestor "unix" {
    plugin_data {}
  }
}
`, filepath.Join(dir, "agent-data"), port, s.AgentSocket, TrustDomain))

	s.run("server", filepath.Join(bin, "spire-server"), "run", "-config", filepath.Join(dir, "server.conf"))
	s.waitHealthy("spire-server", "-socketPath", s.serverSock)

	out := s.cli("spire-server", "token", "generate", "-socketPath", s.serverSock, "-spiffeID", "spiffe://"+TrustDomain+"/host", "-ttl", "600")
	token := ""
	for _, f := range strings.Fields(out) {
		token = f // "Token: <uuid>"
	}
	if token == "" {
		t.Fatalf("spire-server token generate: no token in %q", out)
	}
	s.run("agent", filepath.Join(bin, "spire-agent"), "run", "-config", filepath.Join(dir, "agent.conf"), "-joinToken", token)
	s.waitHealthy("spire-agent", "-socketPath", s.AgentSocket)
	return s
}

// Register makes an entry giving processes of uid the SPIFFE ID id
// (spiffe://example.org/<path>), through the unix workload attestor.
func (s *SPIRE) Register(path string, uid int) string {
	s.t.Helper()
	id := "spiffe://" + TrustDomain + "/" + path
	s.cli("spire-server", "entry", "create", "-socketPath", s.serverSock,
		"-parentID", "spiffe://"+TrustDomain+"/host", "-spiffeID", id, "-selector", "unix:uid:"+strconv.Itoa(uid))
	return id
}

// FetchJWTSVID fetches a JWT-SVID for audience from the agent's Workload
// API, retrying while the agent has not yet synced the entry (it syncs
// every few seconds).
func (s *SPIRE) FetchJWTSVID(ctx context.Context, id, audience string) string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var last error
	for {
		svid, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: audience}, workloadapi.WithAddr(s.WorkloadAPI()))
		if err == nil && svid.ID.String() == id {
			return svid.Marshal()
		}
		if err == nil {
			err = fmt.Errorf("got an SVID for %s, want %s", svid.ID, id)
		}
		last = err
		select {
		case <-ctx.Done():
			s.dumpLogs()
			s.t.Fatalf("fetch JWT-SVID %s from %s: %v", id, s.WorkloadAPI(), last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (s *SPIRE) run(name, bin string, args ...string) {
	s.t.Helper()
	logf, err := os.Create(filepath.Join(s.Dir, name+".log"))
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		s.t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	s.t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
}

// cli runs a SPIRE command line and returns its output; failure is fatal.
func (s *SPIRE) cli(bin string, args ...string) string {
	s.t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(filepath.Join(s.bin, bin), args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		s.dumpLogs()
		s.t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func (s *SPIRE) waitHealthy(bin string, sockArgs ...string) {
	s.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var out []byte
	var err error
	for time.Now().Before(deadline) {
		cmd := exec.Command(filepath.Join(s.bin, bin), append([]string{"healthcheck"}, sockArgs...)...)
		if out, err = cmd.CombinedOutput(); err == nil {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	s.dumpLogs()
	s.t.Fatalf("%s not healthy after 90s: %v\n%s", bin, err, out)
}

// dumpLogs logs the tail of each component's log, for a failure's report.
func (s *SPIRE) dumpLogs() {
	for _, name := range []string{"server", "agent"} {
		b, err := os.ReadFile(filepath.Join(s.Dir, name+".log"))
		if err != nil {
			continue
		}
		var lines []string
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		s.t.Logf("spire %s log (tail):\n%s", name, strings.Join(lines, "\n"))
	}
}

func write(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
