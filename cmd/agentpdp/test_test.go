package main

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The default pack's own suite must pass: make test runs it.
func TestCLI_TestDefaultPack(t *testing.T) {
	code, out, stderr := runCLI(t, "test", "--policies", "../../policies")
	if code != 0 || !strings.Contains(out, "0 failed") || !strings.Contains(out, "9 of 9 policies") {
		t.Fatalf("default pack suite: exit %d\n%s%s", code, out, stderr)
	}
}

func TestCLI_TestFailingSuite(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.cedar"), `@id("open") permit (principal, action, resource);
@id("no-mallory") forbid (principal == Agent::"mallory", action, resource);
@id("unused") forbid (principal, action, resource) when { context has never };`)
	writeFile(t, filepath.Join(dir, "agents.entities.json"), `[{"uid":{"type":"Agent","id":"a"},"attrs":{},"parents":[]},
  {"uid":{"type":"Agent","id":"mallory"},"attrs":{},"parents":[]}]`)
	writeFile(t, filepath.Join(dir, "tests", "s.yaml"), `name: suite
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

// JUnit as CI tools read it: time a plain xs:decimal, an errors count, and
// a case that could not run reported as an error (issue 18).
func TestCLI_TestJUnitAttributes(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.cedar"), `@id("open") permit (principal, action, resource);`)
	writeFile(t, filepath.Join(dir, "tests", "s.yaml"), `name: suite
cases:
  - name: passes
    request: {principal: 'Agent::"a"', action: 'Action::"x"', resource: 'R::"r"'}
    expect: allow
  - name: fails
    request: {principal: 'Agent::"a"', action: 'Action::"x"', resource: 'R::"r"'}
    expect: deny
  - name: cannot run
    request: {principal: 'Agent::"a"', action: 'Action::"x"'}
    expect: allow
`)
	junit := filepath.Join(t.TempDir(), "junit.xml")
	if code, out, stderr := runCLI(t, "test", "--policies", dir, "--junit", junit); code != exitFail {
		t.Fatalf("exit %d %s %s", code, out, stderr)
	}
	b, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	var x struct {
		Tests, Failures, Errors int    `xml:",attr"`
		Time                    string `xml:"time,attr"`
		Suites                  []struct {
			Tests    int    `xml:"tests,attr"`
			Failures int    `xml:"failures,attr"`
			Errors   *int   `xml:"errors,attr"`
			Time     string `xml:"time,attr"`
			Cases    []struct {
				Name    string    `xml:"name,attr"`
				Time    string    `xml:"time,attr"`
				Failure *struct{} `xml:"failure"`
				Error   *struct{} `xml:"error"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &x); err != nil || len(x.Suites) != 1 {
		t.Fatalf("junit: %v %s", err, b)
	}
	s := x.Suites[0]
	if s.Tests != 3 || s.Failures != 1 || s.Errors == nil || *s.Errors != 1 || s.Cases[1].Failure == nil || s.Cases[2].Error == nil {
		t.Errorf("counts: %s", b)
	}
	decimal := regexp.MustCompile(`^[0-9]+\.[0-9]+$`)
	times := []string{x.Time, s.Time}
	for _, c := range s.Cases {
		times = append(times, c.Time)
	}
	for _, tm := range times {
		if !decimal.MatchString(tm) {
			t.Errorf("time %q is not a plain decimal: %s", tm, b)
		}
	}
}

// Two cases of the same name: an error naming both places, in one file
// and across files whose suites share a name.
func TestCLI_TestDuplicateNames(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.cedar"), `permit (principal, action, resource);`)
	req := "    request: {principal: 'A::\"a\"', action: 'A::\"a\"', resource: 'A::\"a\"'}\n    expect: allow\n"
	writeFile(t, filepath.Join(dir, "tests", "s.yaml"), "name: s\ncases:\n  - name: one\n"+req+"  - name: two\n"+req+"  - name: one\n"+req)
	code, _, stderr := runCLI(t, "test", "--policies", dir)
	s := filepath.Join(dir, "tests", "s.yaml")
	if want := "test s/one is defined twice: at " + s + ":3 and at " + s + ":9"; code != exitFail || !strings.Contains(stderr, want) {
		t.Errorf("in one file: exit %d %q, want %q", code, stderr, want)
	}
	os.WriteFile(s, []byte("name: s\ncases:\n  - name: one\n"+req), 0o644)
	writeFile(t, filepath.Join(dir, "tests", "more", "s.json"), `{"name": "s", "cases": [
  {"name": "one", "request": {"principal": "A::\"a\"", "action": "A::\"a\"", "resource": "A::\"a\""}, "expect": "allow"}]}`)
	code, _, stderr = runCLI(t, "test", "--policies", dir)
	if want := filepath.Join(dir, "tests", "more", "s.json") + ":2 and at " + s + ":3"; code != exitFail || !strings.Contains(stderr, want) {
		t.Errorf("across files: exit %d %q, want %q", code, stderr, want)
	}
}
