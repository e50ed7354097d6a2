package main

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The default pack's own suite must pass: make test runs it.
func TestCLI_TestDefaultPack(t *testing.T) {
	code, out, stderr := runCLI(t, "test", "--policies", "../../policies")
	if code != 0 || !strings.Contains(out, "0 failed") || !strings.Contains(out, "8 of 8 policies") {
		t.Fatalf("default pack suite: exit %d\n%s%s", code, out, stderr)
	}
}

func TestCLI_TestFailingSuite(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.cedar"), `@id("open") permit (principal, action, resource);
@id("no-mallory") forbid (principal == Agent::"mallory", action, resource);
@id("unused") forbid (principal, action, resource) when { context has never };`)
	writeFile(t, filepath.Join(dir, "tests", "s.yaml"), `name: suite
entities:
  - {uid: 'Agent::"a"', attrs: {}}
cases:
  - name: passes
    request: {principal: 'Agent::"a"', action: 'Action::"x"', resource: 'R::"r"'}
    expect: allow
  - name: wrong decision
    request: {principal: 'Agent::"mallory"', action: 'Action::"x"', resource: 'R::"r"'}
    expect: allow
  - name: wrong policies
    request: {principal: 'Agent::"a"', action: 'Action::"x"', resource: 'R::"r"'}
    expect: allow
    policies: [something-else]
`)
	code, out, _ := runCLI(t, "test", "--policies", dir)
	if code != exitFail {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{
		"--- FAIL: suite/wrong decision",
		"decision: want allow, got deny",
		"decided by: forbid no-mallory (" + filepath.ToSlash(dir) + "/p.cedar:2)",
		"--- FAIL: suite/wrong policies",
		"deciding policies: want [something-else], got [open]",
		"coverage: 2 of 3 policies",
		"never decided: unused",
		"1 passed, 2 failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "PASS") {
		t.Errorf("passing cases printed without -v:\n%s", out)
	}
	junit := filepath.Join(t.TempDir(), "junit.xml")
	code, out, _ = runCLI(t, "test", "--policies", dir, "--json", "--junit", junit)
	if code != exitFail || len(strings.Split(strings.TrimSpace(out), "\n")) != 4 {
		t.Errorf("--json: exit %d\n%s", code, out)
	}
	var last map[string]any
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if json.Unmarshal([]byte(lines[len(lines)-1]), &last) != nil || last["failed"] != 2.0 {
		t.Errorf("--json summary: %s", lines[len(lines)-1])
	}
	b, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	var x struct {
		Suites []struct {
			Tests    int `xml:"tests,attr"`
			Failures int `xml:"failures,attr"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &x); err != nil || len(x.Suites) != 1 || x.Suites[0].Tests != 3 || x.Suites[0].Failures != 2 {
		t.Errorf("junit: %s", b)
	}
}

func TestCLI_TestBadSuite(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.cedar"), `permit (principal, action, resource);`)
	for _, suite := range []string{
		"cases:\n  - name: x\n    request: {principal: 'A::\"a\"', action: 'A::\"a\"', resource: 'A::\"a\"'}\n    expect: permit\n",
		"cases:\n  - name: x\n    reqest: {}\n    expect: allow\n",
		"name: empty\n",
	} {
		writeFile(t, filepath.Join(dir, "tests", "s.yaml"), suite)
		if code, _, stderr := runCLI(t, "test", "--policies", dir); code != exitFail || stderr == "" {
			t.Errorf("%q: exit %d %q", suite, code, stderr)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
