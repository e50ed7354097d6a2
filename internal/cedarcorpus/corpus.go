// Package cedarcorpus reads the Cedar integration corpus that ships inside
// the cedar-go module, so that tests can hold agentpdp's decisions against
// Rust Cedar's.
package cedarcorpus

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// Case is one corpus test: a policy set, entities and schema, and requests
// with Rust Cedar's answers.
type Case struct {
	Name           string
	Policies       []byte
	Entities       []byte
	Schema         []byte
	ShouldValidate bool
	Requests       []Request
}

// Request is a corpus request; Body is it in agentpdp's request shape, on one
// line.
type Request struct {
	Desc     string
	Body     []byte
	Decision string   // allow or deny
	Reasons  []string // Cedar's policy ids, policy0…
	Errors   []string
}

// Load reads every case, sorted by name. It finds the cedar-go module with
// the go command, so it works wherever the module is in the module cache.
func Load() ([]Case, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cedar-policy/cedar-go").Output()
	if err != nil {
		return nil, fmt.Errorf("find the cedar-go module: %w", err)
	}
	files, err := readTarGz(filepath.Join(strings.TrimSpace(string(out)), "corpus-tests.tar.gz"))
	if err != nil {
		return nil, err
	}
	var cases []Case
	for name, b := range files {
		if !strings.HasSuffix(name, ".json") || strings.HasSuffix(name, ".entities.json") {
			continue
		}
		var raw struct {
			Schema, Policies, Entities string
			ShouldValidate             bool `json:"shouldValidate"`
			Requests                   []struct {
				Description                          string
				Principal, Action, Resource, Context json.RawMessage
				Decision                             string
				Reason, Errors                       []string
			}
		}
		if err := json.Unmarshal(b, &raw); err != nil {
			return nil, fmt.Errorf("corpus %s: %w", name, err)
		}
		c := Case{Name: name, Policies: files[raw.Policies], Entities: files[raw.Entities], Schema: files[raw.Schema], ShouldValidate: raw.ShouldValidate}
		for _, r := range raw.Requests {
			// Marshal compacts the pretty-printed corpus onto one line.
			body, err := json.Marshal(map[string]json.RawMessage{"principal": r.Principal, "action": r.Action, "resource": r.Resource, "context": r.Context})
			if err != nil {
				return nil, fmt.Errorf("corpus %s: %w", name, err)
			}
			c.Requests = append(c.Requests, Request{Desc: r.Description, Body: body, Decision: r.Decision, Reasons: r.Reason, Errors: r.Errors})
		}
		cases = append(cases, c)
	}
	slices.SortFunc(cases, func(a, b Case) int { return strings.Compare(a.Name, b.Name) })
	return cases, nil
}

func readTarGz(path string) (map[string][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("the Cedar corpus ships in cedar-go: %w", err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if files[h.Name], err = io.ReadAll(tr); err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
	}
}
