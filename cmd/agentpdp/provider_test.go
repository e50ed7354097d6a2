package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

func TestServe_EntityProviders(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "inventory-plugin")
	if out, err := exec.Command("go", "build", "-o", bin, "../../examples/inventory-plugin").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	inventory, _ := filepath.Abs("../../examples/inventory-plugin/inventory.json")
	d := newDaemonDir(t)
	appendConfig(t, d, "entity_providers:\n  - {name: inventory, command: "+bin+", args: ["+inventory+"], timeout: 2s}\n")
	d.start()
	cl := client.New(d.sock())
	// intern-bot claims high trust inline; the inventory says low.
	req := &wire.Request{Principal: wire.EntityRef{Type: "Agent", ID: "intern-bot"}, Action: wire.EntityRef{Type: "Action", ID: "invoke_tool"},
		Resource: wire.EntityRef{Type: "Tool", ID: "web.search"},
		Entities: []wire.Entity{{UID: wire.EntityRef{Type: "Agent", ID: "intern-bot"}, Attrs: []byte(`{"trust":"high","owner":{"__entity":{"type":"User","id":"x"}}}`),
			Parents: []wire.EntityRef{{Type: "Team", ID: "finance"}}}}}
	if dec, err := cl.Authorize(t.Context(), req); err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), `Agent::"intern-bot"`) {
		t.Fatalf("an agent describing itself over the inventory must be refused: %v %v", dec, err)
	}
	// Without the claim, the inventory's word decides.
	req.Entities = nil
	dec, err := cl.Authorize(t.Context(), req)
	if err != nil || dec.Decision != wire.StepUp || dec.Reasons[0].Policy != "low-trust-agents-need-approval" {
		t.Fatalf("the inventory's trust must decide: %v %v", dec, err)
	}
	// An agent the inventory does not know is no one.
	ghost := *req
	ghost.Principal.ID = "ghost"
	if dec, err := cl.Authorize(t.Context(), &ghost); err != nil || dec.Decision != wire.Deny || dec.Reasons[0].Policy != pdp.ReasonUnknownPrincipal {
		t.Fatalf("an agent unknown to the inventory: %v %v", dec, err)
	}
	_, out, _ := runCLI(t, "log", "query", "--db", d.db(), "--decision", dec.DecisionID, "--json")
	if !strings.Contains(out, `"provided_entities":[{"uid":{"type":"Agent","id":"intern-bot"}`) {
		t.Errorf("provided entities not in the row: %s", out)
	}

	// The provider is SIGKILLed: requests are still answered (denied while
	// it is down, never a 5xx), and it comes back.
	exec.Command("pkill", "-KILL", "-f", bin).Run()
	deadline := time.Now().Add(15 * time.Second)
	sawDenied := false
	for {
		dec, err := cl.Authorize(t.Context(), req)
		if err != nil {
			t.Fatalf("a request failed while the plugin was down: %v", err)
		}
		if dec.Decision == wire.Deny && dec.Reasons[0].Policy == pdp.ReasonProviderFailed {
			sawDenied = true
		}
		if dec.Decision == wire.StepUp {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the provider did not come back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// It was killed and relaunched (often within the next request itself).
	if _, body := scrape(t, d.asock()); !strings.Contains(body, "agentpdp_plugin_restarts_total 1") {
		t.Errorf("no restart counted after the kill:\n%s", grepLines(body, "plugin"))
	}
	t.Logf("requests denied while the provider was down: %v", sawDenied)
	d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.done
	if code, out, _ := runCLI(t, "replay", "--db", d.db()); code != 0 || !strings.Contains(out, "reproduced exactly") {
		t.Errorf("replay with provided entities: %d %s", code, out)
	}
}

func TestServe_HangingProviderDenies(t *testing.T) {
	d := newDaemonDir(t)
	appendConfig(t, d, "entity_providers:\n  - {name: stuck, command: "+exeArgs()+", timeout: 100ms}\n")
	d.start()
	start := time.Now()
	dec, err := client.New(d.sock()).Authorize(t.Context(), &wire.Request{Principal: wire.EntityRef{Type: "Agent", ID: "billing-bot"},
		Action: wire.EntityRef{Type: "Action", ID: "invoke_tool"}, Resource: wire.EntityRef{Type: "Tool", ID: "sql.query"}})
	took := time.Since(start)
	if err != nil {
		t.Fatalf("a hanging provider failed the request instead of denying it: %v", err)
	}
	// The provider is named once (the engine names it; the plugin host does not).
	if want := "entity provider stuck: no answer within the deadline: context deadline exceeded"; dec.Decision != wire.Deny ||
		dec.Reasons[0].Policy != pdp.ReasonProviderFailed || dec.Reasons[0].Detail != want {
		t.Errorf("want deny %s with detail %q: %+v", pdp.ReasonProviderFailed, want, dec.Reasons)
	}
	if took > 5*time.Second {
		t.Errorf("the deadline was not kept: %v", took)
	}
	if len(dec.Errors) == 0 || dec.Errors[0].Policy != pdp.ReasonProviderFailed {
		t.Errorf("the provider's error is not in the decision's errors: %+v", dec.Errors)
	}

	// A daemon stopped with SIGTERM takes its plugin with it, even one
	// that never answers (each run of this test once left the provider
	// running, orphaned: the daemons of the tests were SIGKILLed).
	kids := childrenOf(t, d.cmd.Process.Pid)
	if len(kids) == 0 {
		t.Fatal("the daemon has no child process: where is the provider?")
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.done
	waitExited(t, "the provider plugin to exit with the daemon", kids)
}

// A daemon killed outright (SIGKILL, the OOM killer) cannot stop its
// plugins itself: the kernel sends them SIGTERM as it dies.
func TestServe_KilledDaemonTakesItsPlugins(t *testing.T) {
	d := newDaemonDir(t)
	appendConfig(t, d, "entity_providers:\n  - {name: stuck, command: "+exeArgs()+", timeout: 100ms}\n")
	d.start()
	if _, err := client.New(d.sock()).Authorize(t.Context(), &wire.Request{Principal: wire.EntityRef{Type: "Agent", ID: "billing-bot"},
		Action: wire.EntityRef{Type: "Action", ID: "invoke_tool"}, Resource: wire.EntityRef{Type: "Tool", ID: "sql.query"}}); err != nil {
		t.Fatal(err)
	}
	kids := childrenOf(t, d.cmd.Process.Pid)
	if len(kids) == 0 {
		t.Fatal("the daemon has no child process: where is the provider?")
	}
	d.cmd.Process.Kill()
	<-d.done
	waitExited(t, "the provider plugin to exit with the killed daemon", kids)
}

// waitExited waits for every process in pids to be gone, for what.
func waitExited(t *testing.T, what string, pids []int) {
	t.Helper()
	pdptest.Eventually(t, what, func() bool {
		for _, pid := range pids {
			if running(pid) {
				return false
			}
		}
		return true
	})
}

// running reports whether pid is a live process: not gone, and not a
// zombie waiting for whichever parent inherited it to reap it.
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

// childrenOf lists the pids whose parent is pid, from /proc.
func childrenOf(t *testing.T, pid int) []int {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var kids []int
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid …: comm may hold spaces, so read after its ')'.
		fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			child, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
			kids = append(kids, child)
		}
	}
	return kids
}

// exeArgs is the test binary run as the hanging provider plugin.
func exeArgs() string {
	return osArgs0() + ", args: [agentpdp-test-provider]"
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A plugin that cannot start is named once, by what it was for (issue 17:
// "entity provider x: plugin x: …").
func TestServe_PluginThatCannotStartIsNamedOnce(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-plugin")
	d := newDaemonDir(t)
	appendConfig(t, d, "entity_providers:\n  - {name: inventory, command: "+missing+"}\n")
	code, _, stderr := runCLI(t, "serve", "--config", d.config)
	if code != exitFail || strings.Count(stderr, "inventory") != 1 || !strings.Contains(stderr, "agentpdp: entity provider inventory: launch: ") {
		t.Errorf("a provider that cannot start: exit %d %q", code, stderr)
	}
	d = newDaemonDir(t)
	appendConfig(t, d, "sinks:\n  - {name: custom, type: plugin, command: "+missing+"}\n")
	code, _, stderr = runCLI(t, "serve", "--config", d.config)
	if code != exitFail || strings.Count(stderr, "custom") != 1 || !strings.Contains(stderr, "agentpdp: sink custom: launch: ") {
		t.Errorf("a sink plugin that cannot start: exit %d %q", code, stderr)
	}
}
