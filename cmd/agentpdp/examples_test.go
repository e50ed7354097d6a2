package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// walkthroughBin builds the example binaries once, into a temporary
// directory, beside this test binary as agentpdp (AGENTPDP_TEST_MAIN): what
// examples/walkthrough.sh takes as AGENTPDP_WALK_BIN.
func walkthroughBin(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+string(filepath.Separator),
		"./examples/go-guard", "./examples/http-receiver", "./examples/inventory-plugin", "./examples/mcp-server", "./examples/sink-plugin")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the examples: %v\n%s", err, out)
	}
	self, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(self, filepath.Join(bin, "agentpdp")); err != nil {
		t.Fatal(err)
	}
	return bin
}

// runWalkthrough runs examples/walkthrough.sh NAME, for two minutes at
// most: then its process group gets SIGTERM, and its trap stops what it
// started.
func runWalkthrough(t *testing.T, bin, name string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "../../examples/walkthrough.sh", name)
	cmd.Env = append(os.Environ(), "AGENTPDP_WALK_BIN="+bin, "AGENTPDP_TEST_MAIN=1", "PYTHONDONTWRITEBYTECODE=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 15 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("walkthrough %s did not finish within two minutes: %w", name, err)
	}
	return string(out), err
}

// Each walkthrough of examples/README.md runs as a script, with the README's
// commands, in a directory of its own beside make run, and fails when a step
// does not do what the text says (issue 17: authorize.sh's step-up failed at
// every step and still exited 0; the other walkthroughs were prose).
func TestExamples_Walkthroughs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the examples and runs each walkthrough: seconds each")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed: the walkthroughs need it")
	}
	bin := walkthroughBin(t)
	names, err := filepath.Glob("../../examples/walkthroughs/*.sh")
	if err != nil || len(names) < 6 {
		t.Fatalf("walkthroughs: %v %v", names, err)
	}
	for _, path := range names {
		name := strings.TrimSuffix(filepath.Base(path), ".sh")
		t.Run(name, func(t *testing.T) {
			if _, err := exec.LookPath("python3"); err != nil && name == "python" {
				t.Skip("python3 is not installed: the Python walkthrough needs it")
			}
			start := time.Now()
			out, err := runWalkthrough(t, bin, name)
			if err != nil || !strings.Contains(out, "ok: walkthrough "+name) {
				t.Fatalf("walkthrough %s: %v\n%s", name, err, out)
			}
			if strings.Contains(out, "FAILED") {
				t.Errorf("walkthrough %s passed with a failure in its output:\n%s", name, out)
			}
			t.Logf("walkthrough %s: %s", name, time.Since(start).Round(time.Millisecond))
		})
	}

	t.Run("a step that does not do what the text says fails, naming it", func(t *testing.T) {
		// An agentpdp whose log tail shows nothing: authorize.sh passes,
		// the README's log tail step does not.
		broken := t.TempDir()
		for _, f := range []string{"go-guard", "http-receiver", "inventory-plugin", "mcp-server", "sink-plugin"} {
			if err := os.Symlink(filepath.Join(bin, f), filepath.Join(broken, f)); err != nil {
				t.Fatal(err)
			}
		}
		self, _ := filepath.Abs(os.Args[0])
		wrapper := "#!/bin/sh\n[ \"$1 $2\" = \"log tail\" ] && exit 0\nexec '" + self + "' \"$@\"\n"
		writeFile(t, filepath.Join(broken, "agentpdp"), wrapper)
		if err := os.Chmod(filepath.Join(broken, "agentpdp"), 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := runWalkthrough(t, broken, "curl")
		if err == nil || !strings.Contains(out, "FAILED: curl: ./bin/agentpdp log tail shows every decision and its outcome: expected") {
			t.Errorf("want the walkthrough to fail at its log tail step: %v\n%s", err, out)
		}
	})

	// Against policies that deny everything, the first step of authorize.sh
	// fails, and so does the script.
	d := newDaemonDir(t)
	writeFile(t, filepath.Join(d.dir, "policies", "agents.cedar"), `@id("no") forbid (principal, action, resource);`+"\n")
	d.start()
	script := exec.Command("bash", "../../examples/curl/authorize.sh")
	script.Env = append(os.Environ(), "AGENTPDP_SOCKET="+d.sock(), "AGENTPDP_ADMIN_SOCKET="+d.asock())
	out, err := script.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "FAILED: expected allow") {
		t.Errorf("a failing step must fail the walkthrough: %v\n%s", err, out)
	}
}

// Every command examples/README.md shows is in the script of its section's
// walkthrough, so the README and the scripts cannot drift apart: each ```sh
// line (continuations joined, trailing comment and redirections to a file
// dropped), and each JSON-RPC line an MCP client sends, must appear as is in
// examples/walkthroughs/NAME.sh, where NAME is the section's
// `examples/walkthrough.sh NAME`. The shipping script's $port stands for the
// README's 18080.
func TestExamples_READMECommandsAreInTheScripts(t *testing.T) {
	readme, err := os.ReadFile("../../examples/README.md")
	if err != nil {
		t.Fatal(err)
	}
	sections := strings.Split(string(readme), "\n## ")[1:]
	if len(sections) < 6 {
		t.Fatalf("want the README's six walkthrough sections, got %d", len(sections))
	}
	named := regexp.MustCompile("`examples/walkthrough\\.sh ([a-z-]+)`")
	for _, sec := range sections {
		title, _, _ := strings.Cut(sec, "\n")
		m := named.FindStringSubmatch(sec)
		if m == nil {
			t.Errorf("section %q names no walkthrough script (`examples/walkthrough.sh NAME`)", title)
			continue
		}
		body, err := os.ReadFile("../../examples/walkthroughs/" + m[1] + ".sh")
		if err != nil {
			t.Errorf("section %q: %v", title, err)
			continue
		}
		script := string(body)
		script = strings.ReplaceAll(script, `'"$port"'`, "18080")
		script = strings.ReplaceAll(script, "$port", "18080")
		var lines []string
		for _, l := range shellLines(script) {
			lines = append(lines, commandText(l))
		}
		cmds := readmeCommands(sec)
		if len(cmds) == 0 {
			t.Errorf("section %q shows no command", title)
		}
		for _, c := range cmds {
			if !containsCommand(lines, c) {
				t.Errorf("section %q: examples/walkthroughs/%s.sh does not run the README's command:\n  %s", title, m[1], c)
			}
		}
	}
}

// readmeCommands is what a section tells the user to run or type.
func readmeCommands(sec string) []string {
	var cmds []string
	parts := strings.Split(sec, "```")
	for i := 1; i < len(parts); i += 2 {
		lang, block, _ := strings.Cut(parts[i], "\n")
		switch lang {
		case "sh":
			for _, l := range shellLines(block) {
				if c := commandText(l); c != "" {
					cmds = append(cmds, c)
				}
			}
		case "json":
			for l := range strings.SplitSeq(block, "\n") {
				if strings.HasPrefix(l, `{"jsonrpc"`) {
					cmds = append(cmds, l)
				}
			}
		}
	}
	return cmds
}

// shellLines joins backslash continuations into one line each.
func shellLines(text string) []string {
	var out []string
	cur := ""
	for l := range strings.SplitSeq(text, "\n") {
		if cur != "" {
			l = strings.TrimLeft(l, " \t")
		}
		if s, ok := strings.CutSuffix(l, "\\"); ok {
			cur += strings.TrimRight(s, " ") + " "
			continue
		}
		out = append(out, cur+l)
		cur = ""
	}
	return out
}

var redirect = regexp.MustCompile(`\s+[12]?>>?\s*[\w./-]+(\s+2>&1)?`)

// commandText is a shell line without its comment (a # after a space,
// outside quotes), its redirections to files, and surrounding space.
func commandText(l string) string {
	var quote rune
	for i, r := range l {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote = r
		case r == '#' && (i == 0 || l[i-1] == ' ' || l[i-1] == '\t'):
			l = l[:i]
		}
		if len(l) <= i {
			break
		}
	}
	return strings.TrimSpace(redirect.ReplaceAllString(l, ""))
}

// containsCommand reports whether one of lines runs c: c appears in it,
// neither preceded nor followed by more of a word.
func containsCommand(lines []string, c string) bool {
	for _, l := range lines {
		for i := 0; ; {
			j := strings.Index(l[i:], c)
			if j < 0 {
				break
			}
			j += i
			before, after := byte(' '), byte(' ')
			if j > 0 {
				before = l[j-1]
			}
			if k := j + len(c); k < len(l) {
				after = l[k]
			}
			if strings.IndexByte(" \t(", before) >= 0 && strings.IndexByte(" \t);|&", after) >= 0 {
				return true
			}
			i = j + 1
		}
	}
	return false
}

// The Go snippet of examples/README.md compiles as shown (issue 17: it used
// pdp.Request and pdp.EntityRef, which do not exist): wrapped in a main
// package placed in the module by an overlay, nothing written to the tree.
func TestExamples_READMEGoSnippetCompiles(t *testing.T) {
	readme, err := os.ReadFile("../../examples/README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "```go\n")
	snippet, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("examples/README.md shows no Go snippet")
	}
	src := "package main\n\nimport (\n\t\"context\"\n\n\t\"github.com/agentpdp/agentpdp/pdp/client\"\n\t\"github.com/agentpdp/agentpdp/pdp/wire\"\n)\n\n" +
		"func runQuery(context.Context) error { return nil }\n\nfunc main() {\n\tctx := context.Background()\n" + snippet + "\t_ = err\n}\n"
	dir := t.TempDir()
	file := filepath.Join(dir, "main.go")
	writeFile(t, file, src)
	abs, err := filepath.Abs("../../examples/readme-snippet/main.go")
	if err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(dir, "overlay.json")
	writeFile(t, overlay, `{"Replace": {"`+abs+`": "`+file+`"}}`)
	build := exec.Command("go", "build", "-overlay", overlay, "-o", filepath.Join(dir, "snippet"), "./examples/readme-snippet")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("the README's Go snippet does not compile: %v\n%s\n%s", err, out, src)
	}
}
