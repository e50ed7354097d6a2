package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 17: a bad configuration file exited 1, the code for "what was
// checked failed". It is a usage error (exit 2) in every command that reads
// one: an unknown key, a value of the wrong type, a value outside its
// choices, and a file that is not there.
func TestCLI_ConfigErrorsExitTwo(t *testing.T) {
	dir := t.TempDir()
	write := func(name, yaml string) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, []byte(yaml), 0o644))
		return p
	}
	daemonFiles := []struct{ yaml, says string }{
		{"bogus: 1\n", `unknown key "bogus"`},
		{"approvals: {ttl: 5}\n", "approvals.ttl: want a duration such as 15m, 2s or 100ms, got 5"},
		{"durability: sometimes\n", `durability: "sometimes", want one of full, normal`},
		{"sinks:\n  - {name: a, type: file, path: x, start: latest}\n", `sink a: start "latest": want oldest`},
	}
	daemonCommands := [][]string{
		{"serve", "--config"},
		{"ship", "--config"},
		{"sinks", "--config"},
		{"log", "prune", "--max-rows", "5", "--config"},
		{"mcp-proxy", "--principal", `Agent::"a"`, "--config"},
	}
	for i, f := range daemonFiles {
		path := write("agentpdp-"+string(rune('a'+i))+".yaml", f.yaml)
		for _, args := range daemonCommands {
			args := append(append([]string{}, args...), path)
			if args[0] == "mcp-proxy" {
				args = append(args, "--", "true")
			}
			code, _, stderr := runCLI(t, args...)
			// The file is named whatever is wrong in it, a value as much as a type.
			if code != exitUsage || !strings.Contains(stderr, f.says) || !strings.Contains(stderr, "config "+path+": ") || strings.Count(stderr, "agentpdp:") != 1 {
				t.Errorf("%s with %q: exit %d %q, want 2 naming the file and %s once", strings.Join(args[:len(args)-1], " "), f.yaml, code, stderr, f.says)
			}
		}
	}
	for _, tc := range []struct {
		args []string
		yaml string
		says string
	}{
		{[]string{"collector", "--config"}, "bogus: 1\n", `unknown key "bogus"`},
		{[]string{"collector", "--config"}, "gap_delay: 5\n", "gap_delay: want a duration such as 15m, 2s or 100ms, got 5"},
		{[]string{"collector", "--config"}, "log: {level: loud}\n", `log.level: "loud", want one of debug, info, warn, error`},
		{[]string{"console", "--config"}, "bogus: 1\n", `unknown key "bogus"`},
		{[]string{"console", "--config"}, "link_ttl: 5\n", "link_ttl: want a duration such as 15m, 2s or 100ms, got 5"},
		{[]string{"console", "--config"}, "log: {level: loud}\n", `log.level: "loud", want one of debug, info, warn, error`},
	} {
		args := append(append([]string{}, tc.args...), write(tc.args[0]+".yaml", tc.yaml))
		if code, _, stderr := runCLI(t, args...); code != exitUsage || !strings.Contains(stderr, tc.says) {
			t.Errorf("%s with %q: exit %d %q, want 2 naming %s", tc.args[0], tc.yaml, code, stderr, tc.says)
		}
	}
	// A configuration file that is not there.
	missing := filepath.Join(dir, "none.yaml")
	for _, args := range append(daemonCommands, []string{"collector", "--config"}, []string{"console", "--config"}) {
		args := append(append([]string{}, args...), missing)
		if args[0] == "mcp-proxy" {
			args = append(args, "--", "true")
		}
		// It names the file once, says what to give, and is not Go's "open …".
		if code, _, stderr := runCLI(t, args...); code != exitUsage || !strings.Contains(stderr, missing+": no such file") || strings.Contains(stderr, "open ") {
			t.Errorf("%s with a missing file: exit %d %q, want 2 naming it and what to give", args[0], code, stderr)
		}
	}
}
