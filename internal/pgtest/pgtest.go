// Package pgtest runs a throwaway PostgreSQL server for tests: initdb and
// pg_ctl on a temporary directory, listening on a Unix socket only. As
// root it runs them as the postgres user, since PostgreSQL refuses to run
// as root.
package pgtest

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Server is a running PostgreSQL.
type Server struct {
	Dir  string // data directory, socket and log live under it
	DSN  string // libpq DSN over the Unix socket
	bin  string
	user *user.User
}

// bin finds PostgreSQL's server programs: on PATH, or in Debian's
// /usr/lib/postgresql/<version>/bin, the newest first.
func bin() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "pg_ctl")); err == nil {
			return dirs[i], nil
		}
	}
	return "", fmt.Errorf("pg_ctl not found on PATH or in /usr/lib/postgresql/*/bin: run .ci/setup-postgres.sh")
}

// Start initializes and starts a server, stopped when the test ends. The
// settings are passed to postgres as -c name=value.
func Start(t testing.TB, settings ...string) *Server {
	t.Helper()
	s, err := start(settings...)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

func start(settings ...string) (*Server, error) {
	b, err := bin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "agentpdp-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, bin: b}
	if os.Geteuid() == 0 {
		if s.user, err = user.Lookup("postgres"); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root needs the postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(s.user.Uid)
		gid, _ := strconv.Atoi(s.user.Gid)
		// The directory must be the postgres user's: MkdirTemp made it
		// 0700 and root's.
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := s.run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	opts := []string{"-k " + dir, "-c listen_addresses=''"}
	for _, kv := range settings {
		opts = append(opts, "-c "+kv)
	}
	if out, err := s.run("pg_ctl", "-D", data, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "-o", strings.Join(opts, " "), "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pg_ctl start: %v: %s\n%s", err, out, log)
	}
	s.DSN = fmt.Sprintf("host=%s dbname=postgres user=postgres sslmode=disable", dir)
	return s, nil
}

// run runs a PostgreSQL program, as the postgres user when root.
func (s *Server) run(prog string, args ...string) ([]byte, error) {
	path := filepath.Join(s.bin, prog)
	var cmd *exec.Cmd
	if s.user != nil {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = s.Dir
	return cmd.CombinedOutput()
}

// Stop stops the server at once and removes its directory.
func (s *Server) Stop() {
	s.run("pg_ctl", "-D", filepath.Join(s.Dir, "data"), "-m", "immediate", "-w", "stop")
	os.RemoveAll(s.Dir)
}

// Enabled reports whether the PostgreSQL tests should run: make test-pg
// sets AGENTPDP_PG=1. Tests read it; libraries never do.
func Enabled() bool { return os.Getenv("AGENTPDP_PG") == "1" }
