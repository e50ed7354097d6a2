// Package policytest runs policy test suites: files of requests with the
// decisions they must get, evaluated in-process against a policy directory,
// with coverage by policy. It is what agentpdp test runs.
//
// A suite is YAML or JSON:
//
//	name: agents calling tools
//	entities: [...]            # optional, inline entities shared by every case
//	cases:
//	  - name: billing-bot reads its own team's SQL tool
//	    request:               # DESIGN.md's request shape
//	      principal: 'Agent::"billing-bot"'
//	      action: 'Action::"invoke_tool"'
//	      resource: 'Tool::"sql.query"'
//	    expect: allow          # allow, deny or step_up
//	    policies: [agents-may-invoke-tools]   # optional: exactly these decided
//	    step_up: production change needs approval   # optional: the @step_up text
//	    identity: {issuer: "https://idp.example", subject: billing-bot, scopes: [deploy]}  # optional: a verified token's facts
//	    caller: {uid: 1000, exe: /usr/bin/python3}   # optional: the caller as the kernel reports it
//
// expect: refused says the request must be refused (400), and error: the
// text the refusal must contain.
package policytest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/parser"

	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/identity"
	"github.com/agentpdp/agentpdp/pdp/policy"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// Suite is one file of cases.
type Suite struct {
	File     string
	Name     string
	Entities []json.RawMessage
	Cases    []Case
}

// Case is one request and what it must get.
type Case struct {
	Line     int             `json:"-"` // where the case's name is in its file; 0 if unknown
	Name     string          `json:"name"`
	Request  json.RawMessage `json:"request"`
	Expect   string          `json:"expect"`
	Policies []string        `json:"policies,omitempty"`
	StepUp   string          `json:"step_up,omitempty"`
	// Identity is what the case's token verified to: it plays a verified
	// caller (context.identity.verified is true). Without it the caller is
	// unverified.
	Identity *CaseIdentity `json:"identity,omitempty"`
	Caller   *wire.Peer    `json:"caller,omitempty"` // the kernel-attested caller
	Error    string        `json:"error,omitempty"`  // with expect: refused
}

// ExpectRefused is the expectation of a request the daemon refuses (400).
const ExpectRefused = "refused"

// CaseIdentity is a verified token's facts, as a test case states them.
type CaseIdentity struct {
	Issuer   string   `json:"issuer"`
	Subject  string   `json:"subject"`
	SPIFFEID string   `json:"spiffe_id,omitempty"`
	Scopes   []string `json:"scopes,omitempty"`
	Actors   []string `json:"actors,omitempty"`
}

// Result is one case's outcome.
type Result struct {
	Suite    string         `json:"suite"`
	File     string         `json:"file"`
	Case     string         `json:"case"`
	Passed   bool           `json:"passed"`
	Problems []string       `json:"problems,omitempty"` // what differs, one line each
	Got      *wire.Decision `json:"got,omitempty"`
	Expect   string         `json:"expect"`
	Policies []string       `json:"expect_policies,omitempty"`
	Elapsed  time.Duration  `json:"elapsed_ns"`
}

// Report is a whole run.
type Report struct {
	Results   []Result         `json:"results"`
	Passed    int              `json:"passed"`
	Failed    int              `json:"failed"`
	Uncovered []*policy.Policy `json:"uncovered"` // policies that decided no case
	Policies  int              `json:"policies"`
}

// Find lists the suite files under paths (files or directories); with no
// paths, those under dir/tests.
func Find(dir string, paths []string) ([]string, error) {
	if len(paths) == 0 {
		paths = []string{filepath.Join(dir, "tests")}
	}
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("test suites: %w", err)
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && isSuite(path) {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("test suites: %w", err)
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("test suites: no *.yaml, *.yml or *.json files in %s", strings.Join(paths, ", "))
	}
	sort.Strings(files)
	return files, nil
}

func isSuite(p string) bool {
	return strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml") || (strings.HasSuffix(p, ".json") && !strings.HasSuffix(p, policy.EntitiesSuffix))
}

// Load reads a suite file, checking every field as strictly as the daemon
// checks requests, so that a typo fails loudly instead of testing nothing.
func Load(path string) (*Suite, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := caseLines(b)
	if !strings.HasSuffix(path, ".json") {
		if b, err = yaml.YAMLToJSON(b); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	var raw struct {
		Name     string            `json:"name"`
		Entities []json.RawMessage `json:"entities"`
		Cases    []Case            `json:"cases"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s := &Suite{File: path, Name: raw.Name, Entities: raw.Entities, Cases: raw.Cases}
	if s.Name == "" {
		s.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	if len(s.Cases) == 0 {
		return nil, fmt.Errorf("%s: no cases", path)
	}
	for i := range s.Cases {
		if i < len(lines) {
			s.Cases[i].Line = lines[i]
		}
	}
	for i, c := range s.Cases {
		if c.Name == "" {
			return nil, fmt.Errorf("%s: case %d has no name", path, i+1)
		}
		if wire.Verdict(c.Expect) != wire.Allow && wire.Verdict(c.Expect) != wire.Deny && wire.Verdict(c.Expect) != wire.StepUp && c.Expect != ExpectRefused {
			return nil, fmt.Errorf("%s: case %q: expect %q: want allow, deny, step_up or refused", path, c.Name, c.Expect)
		}
		if len(c.Request) == 0 {
			return nil, fmt.Errorf("%s: case %q: no request", path, c.Name)
		}
	}
	return s, nil
}

// caseLines are the lines of each case's name in a suite's text (YAML, or
// JSON, which YAML parses too); nil if the text does not parse here (Load
// then reports why).
func caseLines(b []byte) []int {
	f, err := parser.ParseBytes(b, 0)
	if err != nil {
		return nil
	}
	var lines []int
	for i := 0; ; i++ {
		p, err := yaml.PathString(fmt.Sprintf("$.cases[%d].name", i))
		if err != nil {
			return lines
		}
		n, err := p.FilterFile(f)
		if err != nil || n == nil || n.GetToken() == nil {
			return lines
		}
		lines = append(lines, n.GetToken().Position.Line)
	}
}

// CheckNames refuses two cases with the same suite and case name: reports
// (and JUnit) identify a case by them, so a duplicate would hide one
// result behind the other. The error names both places.
func CheckNames(suites []*Suite) error {
	seen := map[[2]string]string{}
	var errs []error
	for _, s := range suites {
		for i, c := range s.Cases {
			where := fmt.Sprintf("%s:%d", s.File, c.Line)
			if c.Line == 0 {
				where = fmt.Sprintf("%s (case %d)", s.File, i+1)
			}
			key := [2]string{s.Name, c.Name}
			if first, ok := seen[key]; ok {
				errs = append(errs, fmt.Errorf("test %s/%s is defined twice: at %s and at %s; rename one", s.Name, c.Name, first, where))
				continue
			}
			seen[key] = where
		}
	}
	return errors.Join(errs...)
}

// Run evaluates every case of the suites with engine. Duplicate names are
// an error (see CheckNames).
func Run(engine *pdp.Engine, suites []*Suite) (*Report, error) {
	if err := CheckNames(suites); err != nil {
		return nil, err
	}
	snap := engine.Snapshot()
	if snap == nil {
		return nil, errors.New("no policies loaded")
	}
	rep := &Report{Policies: len(snap.Policies)}
	covered := map[string]bool{}
	for _, s := range suites {
		for _, c := range s.Cases {
			res := runCase(engine, s, c)
			if res.Got != nil {
				for _, r := range res.Got.Reasons {
					covered[r.Policy] = true
				}
			}
			if res.Passed {
				rep.Passed++
			} else {
				rep.Failed++
			}
			rep.Results = append(rep.Results, res)
		}
	}
	for _, p := range snap.Policies {
		if !covered[p.ID] {
			rep.Uncovered = append(rep.Uncovered, p)
		}
	}
	return rep, nil
}

func runCase(engine *pdp.Engine, s *Suite, c Case) Result {
	res := Result{Suite: s.Name, File: s.File, Case: c.Name, Expect: c.Expect, Policies: c.Policies}
	body, err := withEntities(c.Request, s.Entities)
	if err != nil {
		res.Problems = []string{err.Error()}
		return res
	}
	req, err := wire.DecodeRequest(body)
	if err != nil {
		res.Problems = []string{"bad request: " + err.Error()}
		return res
	}
	var id *identity.Identity
	if ci := c.Identity; ci != nil {
		// The verified principal is the request's unless the case's
		// actors say who acts; a mismatch is then the case's to test.
		pid := req.Principal
		if len(ci.Actors) > 0 {
			pid.ID = ci.Actors[0]
		}
		id = &identity.Identity{Issuer: ci.Issuer, Subject: ci.Subject, SPIFFEID: ci.SPIFFEID, Scopes: ci.Scopes, Actors: ci.Actors,
			PrincipalType: pid.Type, PrincipalID: pid.ID}
	}
	start := time.Now()
	d, err := engine.EvaluateAs(req, c.Caller, id)
	res.Elapsed = time.Since(start)
	if c.Expect == ExpectRefused {
		switch {
		case err == nil:
			res.Got = d
			res.Problems = []string{fmt.Sprintf("want the request refused, got %s", d.Decision)}
		case !strings.Contains(err.Error(), c.Error):
			res.Problems = []string{fmt.Sprintf("refused with %q, want it to say %q", err, c.Error)}
		}
		res.Passed = len(res.Problems) == 0
		return res
	}
	if err != nil {
		res.Problems = []string{"evaluate: " + err.Error()}
		return res
	}
	res.Got = d
	if d.Decision != wire.Verdict(c.Expect) {
		res.Problems = append(res.Problems, fmt.Sprintf("decision: want %s, got %s", c.Expect, d.Decision))
	}
	var got []string
	for _, r := range d.Reasons {
		got = append(got, r.Policy)
	}
	if c.Policies != nil {
		want := slices.Sorted(slices.Values(c.Policies))
		if !slices.Equal(want, got) {
			res.Problems = append(res.Problems, fmt.Sprintf("deciding policies: want [%s], got [%s]", strings.Join(want, ", "), strings.Join(got, ", ")))
		}
	}
	if c.StepUp != "" {
		var reasons []string
		for _, r := range d.Reasons {
			if v, ok := r.Annotations[policy.AnnotationStepUp]; ok {
				reasons = append(reasons, v)
			}
		}
		if !slices.Contains(reasons, c.StepUp) {
			res.Problems = append(res.Problems, fmt.Sprintf("step_up reason: want %q, got %q", c.StepUp, reasons))
		}
	}
	res.Passed = len(res.Problems) == 0
	return res
}

// withEntities adds the suite's shared entities to a case's request; the
// case's own entities come first, so they win.
func withEntities(req json.RawMessage, shared []json.RawMessage) ([]byte, error) {
	if len(shared) == 0 {
		return req, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(req, &m); err != nil {
		return nil, fmt.Errorf("request: %w", err)
	}
	var own []json.RawMessage
	if e, ok := m["entities"]; ok {
		if err := json.Unmarshal(e, &own); err != nil {
			return nil, fmt.Errorf("request.entities: %w", err)
		}
	}
	seen := map[string]bool{}
	for _, e := range own {
		seen[uidOf(e)] = true
	}
	for _, e := range shared {
		if !seen[uidOf(e)] {
			own = append(own, e)
		}
	}
	b, err := json.Marshal(own)
	if err != nil {
		return nil, err
	}
	m["entities"] = b
	return json.Marshal(m)
}

func uidOf(e json.RawMessage) string {
	var v struct {
		UID wire.EntityRef `json:"uid"`
	}
	json.Unmarshal(e, &v)
	return v.UID.String()
}
