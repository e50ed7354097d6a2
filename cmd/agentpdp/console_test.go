package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestConsole_AddUser(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users")
	add := func(name, stdin string) (int, string) {
		var out, errb strings.Builder
		code := run(t.Context(), []string{"console", "add-user", name, "--users", users}, strings.NewReader(stdin), &out, &errb)
		return code, errb.String()
	}
	if code, stderr := add("carol@example.com", "a long enough password\n"); code != 0 {
		t.Fatalf("add-user: exit %d: %s", code, stderr)
	}
	b, err := os.ReadFile(users)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^carol@example\.com:\$argon2id\$v=19\$m=65536,t=3,p=2\$\S+\$\S+\n$`).Match(b) {
		t.Errorf("accounts file: %q", b)
	}
	for _, c := range []struct {
		name, stdin string
		code        int
		msg         string
	}{
		{"dave", "short\n", exitFail, "at least 12 characters"},
		{"dave", "", exitFail, "no password on standard input"},
		{"bad name", "a long enough password\n", exitUsage, "user name"},
		{"bad:name", "a long enough password\n", exitUsage, "user name"},
	} {
		if code, stderr := add(c.name, c.stdin); code != c.code || !strings.Contains(stderr, c.msg) {
			t.Errorf("add-user %q with %q: exit %d %q, want %d and %q", c.name, c.stdin, code, stderr, c.code, c.msg)
		}
	}
	if code, _, stderr := runCLI(t, "console", "add-user", "--users", users); code != exitUsage {
		t.Errorf("add-user without a name: exit %d %s", code, stderr)
	}
}

func TestConsole_ConfigFile(t *testing.T) {
	d := newDaemonDir(t)
	d.start()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "console.yaml")

	must(t, os.WriteFile(cfg, []byte("listen: 127.0.0.1:0\nbogus: 1\n"), 0o644))
	if code, _, stderr := runCLI(t, "console", "--config", cfg); code != exitFail || !strings.Contains(stderr, "bogus") {
		t.Errorf("an unknown key: exit %d %s", code, stderr)
	}
	if code, _, stderr := runCLI(t, "console", "--listen", "nowhere", "--db", d.db()); code != exitUsage || !strings.Contains(stderr, "listen") {
		t.Errorf("a bad --listen: exit %d %s", code, stderr)
	}

	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf("listen: 127.0.0.1:1\ndb: %s\nadmin_socket: %s\nusers: %s\noperator: ops\npending_window: 5m\n",
		d.db(), d.asock(), filepath.Join(dir, "users"))), 0o644))
	ctx, cancel := context.WithCancel(t.Context())
	out := &lockedWriter{w: &strings.Builder{}}
	errb := &lockedWriter{w: &strings.Builder{}}
	done := make(chan int, 1)
	// --listen on the command line wins over the file's.
	go func() {
		done <- run(ctx, []string{"console", "--config", cfg, "--listen", "127.0.0.1:0"}, strings.NewReader(""), out, errb)
	}()
	re := regexp.MustCompile(`one-time sign-in as ops \(valid once, for 15m0s\): (http://127\.0\.0\.1:\d+)/login/link/\S+`)
	deadline := time.Now().Add(30 * time.Second)
	var m []string
	for m == nil {
		if m = re.FindStringSubmatch(out.String()); m != nil {
			break
		}
		select {
		case code := <-done:
			t.Fatalf("console exited %d: %s", code, errb)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("console printed no link: %s %s", out, errb)
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := http.Get(m[1] + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /login: %d", resp.StatusCode)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("console exited %d after its context ended: %s", code, errb)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("console did not stop")
	}
}
