package pdp_test

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/agentpdp/agentpdp/pdp"
)

// corpusCase is one test of the Cedar integration corpus shipped inside the
// cedar-go module: Rust Cedar's decisions, reasons and errors on generated
// policies, entities and requests.
type corpusCase struct {
	Schema         string `json:"schema"`
	Policies       string `json:"policies"`
	Entities       string `json:"entities"`
	ShouldValidate bool   `json:"shouldValidate"`
	Requests       []struct {
		Desc      string          `json:"description"`
		Principal json.RawMessage `json:"principal"`
		Action    json.RawMessage `json:"action"`
		Resource  json.RawMessage `json:"resource"`
		Context   json.RawMessage `json:"context"`
		Decision  string          `json:"decision"`
		Reasons   []string        `json:"reason"`
		Errors    []string        `json:"errors"`
	} `json:"requests"`
}

// loadCorpus reads corpus-tests.tar.gz from the cedar-go module in the
// module cache.
func loadCorpus(t *testing.T) map[string][]byte {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cedar-policy/cedar-go").Output()
	if err != nil {
		t.Fatalf("find cedar-go module: %v", err)
	}
	f, err := os.Open(filepath.Join(strings.TrimSpace(string(out)), "corpus-tests.tar.gz"))
	if err != nil {
		t.Fatalf("the Cedar corpus ships in cedar-go: %v", err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = b
	}
	return files
}

// TestCedarCorpus checks that agentpdp's Cedar mode (check --cedar-semantics)
// and its on_error: skip mode both reproduce Rust Cedar's allow/deny, and
// the Cedar mode its reasons and errors, on every case of the corpus (a
// sample with -short).
func TestCedarCorpus(t *testing.T) {
	files := loadCorpus(t)
	var names []string
	for name := range files {
		if strings.HasSuffix(name, ".json") && !strings.HasSuffix(name, ".entities.json") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	if len(names) < 1000 {
		t.Fatalf("corpus has %d cases; expected thousands", len(names))
	}
	if testing.Short() {
		sample := names[:0:0]
		for i := 0; i < len(names); i += 20 {
			sample = append(sample, names[i])
		}
		names = sample
	}
	requests := 0
	for _, name := range names {
		var tc corpusCase
		if err := json.Unmarshal(files[name], &tc); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// Policies that do not validate are still authorized by Cedar; the
		// schema then only types the entities.
		validation := pdp.ValidateStrict
		if !tc.ShouldValidate {
			validation = pdp.ValidateOff
		}
		fsys := fstest.MapFS{
			"policy.cedar":         {Data: files[tc.Policies]},
			"corpus.cedarschema":   {Data: files[tc.Schema]},
			"corpus.entities.json": {Data: files[tc.Entities]},
		}
		snap, err := pdp.LoadFS(fsys, "corpus", pdp.LoadOptions{Validation: validation})
		if err != nil {
			t.Errorf("%s: load: %v", name, err)
			continue
		}
		cedarEngine := engineFor(t, snap, pdp.Options{CedarSemantics: true})
		skipEngine := engineFor(t, snap, pdp.Options{OnError: pdp.OnErrorSkip})
		for _, r := range tc.Requests {
			requests++
			body := `{"principal":` + string(r.Principal) + `,"action":` + string(r.Action) +
				`,"resource":` + string(r.Resource) + `,"context":` + string(r.Context) + `}`
			req, err := pdp.DecodeRequest([]byte(body))
			if err != nil {
				t.Errorf("%s %s: decode: %v", name, r.Desc, err)
				continue
			}
			d, err := cedarEngine.Evaluate(req)
			if err != nil {
				t.Errorf("%s %s: %v", name, r.Desc, err)
				continue
			}
			wantReasons, wantErrors := corpusIDs(r.Reasons), corpusIDs(r.Errors)
			if d.Decision != r.Decision || !slices.Equal(reasonIDs(d.Reasons), wantReasons) || !slices.Equal(errorIDs(d.Errors), wantErrors) {
				t.Errorf("%s %s: got %s %v errors %v, Cedar says %s %v errors %v", name, r.Desc,
					d.Decision, reasonIDs(d.Reasons), errorIDs(d.Errors), r.Decision, wantReasons, wantErrors)
			}
			if d2, err := skipEngine.Evaluate(req); err != nil || d2.Decision != r.Decision {
				t.Errorf("%s %s: on_error skip: got %v (%v), Cedar says %s", name, r.Desc, d2, err, r.Decision)
			}
		}
	}
	t.Logf("%d corpus cases, %d requests compared with Rust Cedar", len(names), requests)
}

// corpusIDs turns Cedar's policyN ids into agentpdp's file:index ids.
func corpusIDs(ids []string) []string {
	out := []string{}
	for _, id := range ids {
		out = append(out, "policy.cedar:"+strings.TrimPrefix(id, "policy"))
	}
	slices.Sort(out)
	return out
}

// engineFor makes an engine serving an already loaded snapshot.
func engineFor(t *testing.T, snap *pdp.Snapshot, opts pdp.Options) *pdp.Engine {
	t.Helper()
	e, err := pdp.NewEngine(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Use(t.Context(), snap, "test"); err != nil {
		t.Fatal(err)
	}
	return e
}
