package host_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp/wire"
	"github.com/agentpdp/agentpdp/plugins/host"
)

// build compiles an example plugin for the test.
func build(t *testing.T, pkg string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	out, err := exec.Command("go", "build", "-o", bin, "../../examples/"+pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

func lines(t *testing.T, path string) int {
	b, _ := os.ReadFile(path)
	return strings.Count(string(b), "\n")
}

func TestPluginSink_SurvivesKill(t *testing.T) {
	bin := build(t, "sink-plugin")
	out := filepath.Join(t.TempDir(), "plugin.jsonl")
	var restarts atomic.Int64
	sink, err := host.NewPluginSink(host.PluginConfig{Name: "custom", Command: bin, Args: []string{out}, Restarts: &restarts}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	path, _ := pdptest.LogWith(t, 30)
	s := pdptest.Shipper(t, path, sink)
	s.MinBackoff = 10 * time.Millisecond
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	for lines(t, out) < 30 {
		if ctx.Err() != nil {
			t.Fatalf("rows did not reach the plugin: %d", lines(t, out))
		}
		time.Sleep(10 * time.Millisecond)
	}
	first := sink.Pid()
	before := restarts.Load()
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// More rows arrive while the plugin is dead: they wait, then ship.
	pdptest.LogWithInto(t, path, 20)
	for lines(t, out) < 50 {
		if ctx.Err() != nil {
			t.Fatalf("after the kill: %d rows", lines(t, out))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if sink.Pid() == first || restarts.Load() != before+1 {
		t.Errorf("not relaunched: pid %d → %d, restarts %d → %d", first, sink.Pid(), before, restarts.Load())
	}
}

func TestPlugin_ChecksumRefused(t *testing.T) {
	bin := build(t, "sink-plugin")
	wrong := sha256.Sum256([]byte("not the binary"))
	_, err := host.NewPluginSink(host.PluginConfig{Name: "custom", Command: bin, Args: []string{"/dev/null"}, Checksum: hex.EncodeToString(wrong[:])}, nil)
	if err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("a binary with another checksum ran: %v", err)
	}
	b, _ := os.ReadFile(bin)
	right := sha256.Sum256(b)
	sink, err := host.NewPluginSink(host.PluginConfig{Name: "custom", Command: bin, Args: []string{"/dev/null"}, Checksum: hex.EncodeToString(right[:])}, nil)
	if err != nil {
		t.Fatalf("the right checksum: %v", err)
	}
	sink.Close()
}

func TestPluginProvider_Inventory(t *testing.T) {
	bin := build(t, "inventory-plugin")
	p, err := host.NewPluginProvider(host.PluginConfig{Name: "inventory", Command: bin, Args: []string{"../../examples/inventory-plugin/inventory.json"}}, time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	req := &wire.Request{Principal: wire.EntityRef{Type: "Agent", ID: "intern-bot"}, Action: wire.EntityRef{Type: "Action", ID: "invoke_tool"}, Resource: wire.EntityRef{Type: "Tool", ID: "t"}}
	ents, err := p.Entities(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].UID != req.Principal || !strings.Contains(string(ents[0].Attrs), `"trust":"low"`) || ents[0].Parents[0].ID != "finance" {
		b, _ := json.Marshal(ents)
		t.Fatalf("entities: %s", b)
	}
	// Cached: answered even with the plugin dead.
	syscall.Kill(p.Pid(), syscall.SIGKILL)
	time.Sleep(50 * time.Millisecond)
	if again, err := p.Entities(t.Context(), req); err != nil || len(again) != 1 {
		t.Errorf("cached answer: %v %v", again, err)
	}
	// Uncached: the plugin is relaunched. The first call may meet the dead
	// process (an error, which denies the request); one after the relaunch
	// backoff succeeds.
	other := *req
	other.Principal.ID = "billing-bot"
	ents, err = p.Entities(t.Context(), &other)
	if err != nil {
		time.Sleep(300 * time.Millisecond)
		ents, err = p.Entities(t.Context(), &other)
	}
	if err != nil || len(ents) != 1 || ents[0].UID.ID != "billing-bot" || !strings.Contains(string(ents[0].Attrs), `"trust":"standard"`) {
		t.Errorf("after a crash: %v %v", ents, err)
	}
}
