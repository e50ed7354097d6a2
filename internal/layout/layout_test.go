package layout_test

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The packages agents and plugins embed must build without cgo and without
// the daemon: no SQLite (cgo), no fsnotify, no Prometheus (issue 12).
var light = []string{
	"github.com/agentpdp/agentpdp/pdp/wire",
	"github.com/agentpdp/agentpdp/pdp/client",
	"github.com/agentpdp/agentpdp/pdp/mcpproxy",
	"github.com/agentpdp/agentpdp/plugins",
	"github.com/agentpdp/agentpdp/examples/go-guard",
	"github.com/agentpdp/agentpdp/examples/inventory-plugin",
	"github.com/agentpdp/agentpdp/examples/sink-plugin",
}

var heavy = []string{
	"github.com/mattn/go-sqlite3",
	"github.com/fsnotify/fsnotify",
	"github.com/prometheus/",
	"github.com/agentpdp/agentpdp/decisionlog",
}

func TestLightPackagesLinkNoDaemon(t *testing.T) {
	for _, pkg := range light {
		cmd := exec.Command("go", "list", "-deps", pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s with CGO_ENABLED=0: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, h := range heavy {
				if dep == h || strings.HasPrefix(dep, h) {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}

// TestLightPackagesBuildWithoutCgo builds them with CGO_ENABLED=0: go list
// reports the graph, the build proves no file needs cgo.
func TestLightPackagesBuildWithoutCgo(t *testing.T) {
	cmd := exec.Command("go", append([]string{"build", "-o", os.DevNull}, light...)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, out)
	}
}

// The dependencies docs/architecture.md names: of agentpdp's own packages,
// decisionlog imports only pdp/wire and internal/plural, and pdp/reload
// only pdp/policy (the page once said pdp/reload imported none).
func TestOwnImportsAsDocumented(t *testing.T) {
	const mod = "github.com/agentpdp/agentpdp/"
	for pkg, allowed := range map[string][]string{
		"decisionlog": {"pdp/wire", "internal/plural"},
		"pdp/reload":  {"pdp/policy"},
	} {
		out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, mod+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		for _, imp := range strings.Fields(string(out)) {
			own, ok := strings.CutPrefix(imp, mod)
			if !ok {
				continue
			}
			if !slices.Contains(allowed, own) {
				t.Errorf("%s imports %s; docs/architecture.md says it imports only %v of agentpdp's packages", pkg, own, allowed)
			}
		}
	}
}
