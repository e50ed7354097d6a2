// Package policy loads a policy directory into an immutable [Snapshot]:
// it reads the Cedar policies, schema and entities files, compiles and
// validates them against the schema, lints them, and names the set by a
// version digest of its files. It is the only importer of cedar-go's x/exp.
package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"iter"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
	"github.com/cedar-policy/cedar-go/x/exp/schema"
	"github.com/cedar-policy/cedar-go/x/exp/schema/resolved"
	"github.com/cedar-policy/cedar-go/x/exp/schema/validate"
	xtypes "github.com/cedar-policy/cedar-go/x/exp/types"
)

// File suffixes the loader reads. Everything else in a policy directory, and
// every name starting with a dot (editor swap files, Kubernetes' ..data), is
// ignored.
const (
	PolicySuffix   = ".cedar"
	SchemaSuffix   = ".cedarschema"
	EntitiesSuffix = ".entities.json"
)

// Annotations with a meaning to agentpdp.
const (
	AnnotationID     = "id"
	AnnotationStepUp = "step_up"
	// AnnotationMode "log_only" makes a policy evaluated and recorded but
	// without effect on the answer: a way to try a rule on live traffic.
	AnnotationMode = "mode"
	ModeLogOnly    = "log_only"
	ModeEnforce    = "enforce"
)

// PolicyFile is one file of a snapshot, kept whole so that a policy-load
// record can hold the exact text every later decision was made with.
type PolicyFile struct {
	Path    string `json:"path"` // as shown in positions, e.g. policies/agent.cedar
	Content string `json:"content"`
}

// Policy is one loaded policy with what a decision's reasons report of it.
type Policy struct {
	ID          string
	Effect      string // "permit" or "forbid"
	StepUp      bool
	LogOnly     bool // @mode("log_only"): recorded, never decides
	File        string
	Line        int
	Column      int
	Annotations map[string]string

	cedar *cedar.Policy
	// reasonAnnotations are the annotations a reason shows: all but @id,
	// which is the reason's policy already. Nil when there are none.
	reasonAnnotations map[string]string
}

// Snapshot is an immutable, validated set of policies, schema and static
// entities. The engine publishes a new one on every successful reload and
// never changes one in place, so a request that started on a snapshot
// finishes on it.
type Snapshot struct {
	Version  string // sha256:… over the files' paths and contents
	Root     string // the policy directory as named, prefixing Files' paths
	Files    []PolicyFile
	Policies []*Policy // sorted by ID
	Schema   bool      // whether policies were validated against a schema
	LoadedAt time.Time

	all, forbids, permits          Set
	logOnlyForbids, logOnlyPermits Set
	byID                           map[cedar.PolicyID]*Policy
	entities                       types.EntityMap
	schema                         *resolved.Schema // nil without a schema
	schemaFile                     string
	// validator checks a request's inline entities against the schema, in
	// strict mode, as the static ones were (nil without a schema).
	validator *validate.Validator
	// fileEntities counts the entities files' entities; entities also holds
	// the schema's action entities, so that action groups apply.
	fileEntities int
	// types are the entity types the entities files describe.
	types map[types.EntityType]bool
	// mentions are the daemon-set context keys some policy file's text
	// names (see Mentions).
	mentions map[string]bool
}

// DaemonContextKeys are the context keys the engine itself sets.
var DaemonContextKeys = []string{"identity", "caller"}

// Mentions reports whether some policy may read context.<word>, word one
// of DaemonContextKeys, so that the engine builds that part of the context
// only for policies that may look at it: a policy reads it as an attribute
// (context.word, context["word"], context has word), or uses the context
// whole (context == {…}, [context]), which sees every key without naming
// one. It is read from cedar-go's syntax tree (contextReads), so escapes in
// a string and words in comments make no difference.
func (s *Snapshot) Mentions(word string) bool { return s.mentions[word] }

// contextReads adds to reads the context attributes p's conditions read,
// and every key of DaemonContextKeys if a condition uses the context whole.
func contextReads(p *xast.Policy, reads map[string]bool) {
	whole := false
	for _, c := range p.Conditions {
		xast.Inspect(xast.NewNode(c.Body), func(n xast.IsNode) bool {
			var op xast.StrOpNode
			switch n := n.(type) {
			case xast.NodeTypeAccess:
				op = n.StrOpNode
			case xast.NodeTypeHas:
				op = n.StrOpNode
			case xast.NodeTypeVariable:
				whole = whole || n.Name == "context"
				return true
			default:
				return true
			}
			if v, ok := op.Arg.(xast.NodeTypeVariable); ok && v.Name == "context" {
				reads[string(op.Value)] = true
				return false // the variable is read by attribute, not whole
			}
			return true
		})
	}
	if whole {
		for _, w := range DaemonContextKeys {
			reads[w] = true
		}
	}
}

// Policy returns the policy with the given id, or nil.
func (s *Snapshot) Policy(id string) *Policy { return s.byID[cedar.PolicyID(id)] }

// Entities is the number of static entities in the snapshot.
func (s *Snapshot) Entities() int { return s.fileEntities }

// Knows reports whether uid is one of the snapshot's trusted entities: from
// an entities file, or an action the schema declares.
func (s *Snapshot) Knows(uid types.EntityUID) bool {
	_, ok := s.entities[uid]
	return ok
}

// DescribesType reports whether the entities files hold any entity of type
// t: then a principal of that type they do not hold is unknown.
func (s *Snapshot) DescribesType(t types.EntityType) bool { return s.types[t] }

// ValidateEntity checks an entity a request sent against the schema, in
// strict mode, as Cedar's CLI checks entities. Without a schema it accepts
// anything.
func (s *Snapshot) ValidateEntity(e types.Entity) error {
	if s.validator == nil {
		return nil
	}
	return s.validator.Entity(e)
}

// EntityMap is the snapshot's static entities; callers must not change it.
func (s *Snapshot) EntityMap() types.EntityMap { return s.entities }

// The snapshot's policies by role, each sorted by id: the enforced forbids
// and permits, the @mode("log_only") ones, and all of them (plain Cedar).
func (s *Snapshot) Forbids() Set        { return s.forbids }
func (s *Snapshot) Permits() Set        { return s.permits }
func (s *Snapshot) LogOnlyForbids() Set { return s.logOnlyForbids }
func (s *Snapshot) LogOnlyPermits() Set { return s.logOnlyPermits }
func (s *Snapshot) All() Set            { return s.all }

// ByID is the policy cedar.Authorize names by id; nil if there is none.
func (s *Snapshot) ByID(id cedar.PolicyID) *Policy { return s.byID[id] }

// ReasonAnnotations are the annotations a decision's reason shows: all but
// @id, which is the reason's policy already. Nil when there are none.
func (p *Policy) ReasonAnnotations() map[string]string { return p.reasonAnnotations }

// Set is a cedar.PolicyIterator over a fixed order of policies.
type Set []*Policy

func (ps Set) All() iter.Seq2[cedar.PolicyID, *cedar.Policy] {
	return func(yield func(cedar.PolicyID, *cedar.Policy) bool) {
		for _, p := range ps {
			if !yield(cedar.PolicyID(p.ID), p.cedar) {
				return
			}
		}
	}
}

// Problem is one thing wrong with a policy directory, at a position when
// there is one. It prints like a compiler message: file:line:col: message.
type Problem struct {
	File     string `json:"file"`
	Line     int    `json:"line,omitempty"`
	Column   int    `json:"column,omitempty"`
	Severity string `json:"severity"` // error, or warning (from Lint)
	Message  string `json:"message"`
	// Source is the file's lines around the problem with a caret, for a
	// person at a terminal (the CLI prints it). It holds the file's text,
	// so it is never serialized: problems reach /v1/status.
	Source string `json:"-"`
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", p.Line, p.Column)
	}
	b.WriteString(": ")
	if p.Severity == SeverityWarning {
		b.WriteString("warning: ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Severities of problems.
const (
	SeverityError   = "error"
	SeverityWarning = "warning"
)

// LoadError lists every problem found in a policy directory, so that an
// author sees them all at once, as from a compiler.
type LoadError struct {
	Problems []Problem
}

func (e *LoadError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Validation is how strictly policies are checked against a schema.
type Validation string

const (
	// ValidateStrict is Cedar's strict mode, the default: a load that fails
	// it is refused.
	ValidateStrict Validation = "strict"
	// ValidatePermissive is Cedar's permissive mode.
	ValidatePermissive Validation = "permissive"
	// ValidateOff uses the schema only to parse entities, as Cedar's
	// authorizer does, for evaluating policy sets that do not validate.
	ValidateOff Validation = "off"
)

// LoadOptions adds files from outside the policy directory, as the check and
// validate commands' --schema and --entities flags do, and chooses the
// validation mode.
type LoadOptions struct {
	SchemaFile   string
	EntitiesFile string
	Validation   Validation // default ValidateStrict
}

// LoadDir loads every policy, schema and entities file under dir. Positions
// and the policy version name files as dir joined with their relative path.
// The directory is resolved once, so that a symlink swapped mid-load cannot
// mix two versions.
func LoadDir(dir string, opts LoadOptions) (*Snapshot, error) {
	resolved, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("load policies: %w", err)
	}
	st, err := os.Stat(resolved)
	if err != nil {
		return nil, fmt.Errorf("load policies: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("load policies: %s is not a directory", dir)
	}
	root := filepath.ToSlash(filepath.Clean(dir))
	var files []PolicyFile
	err = ReadTree(resolved, func(rel string, b []byte) error {
		files = append(files, PolicyFile{Path: path.Join(root, rel), Content: string(b)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load policies: %w", err)
	}
	return compileWithExtras(files, root, opts)
}

// LoadFS loads a policy directory from fsys; root prefixes the file names
// shown in positions. Files that are not regular are refused. LoadDir is
// the loader for a directory on disk: it also keeps symlinks inside it.
func LoadFS(fsys fs.FS, root string, opts LoadOptions) (*Snapshot, error) {
	var files []PolicyFile
	err := walkPolicyFiles(fsys, func(p string) error {
		// Regular files only, checked before opening (see ReadTree).
		st, err := fs.Stat(fsys, p)
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("%s: not a regular file (%s): refused without reading it", p, kind(st.Mode()))
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		files = append(files, PolicyFile{Path: path.Join(root, p), Content: string(b)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load policies: %w", err)
	}
	return compileWithExtras(files, root, opts)
}

func compileWithExtras(files []PolicyFile, root string, opts LoadOptions) (*Snapshot, error) {
	for _, extra := range []string{opts.SchemaFile, opts.EntitiesFile} {
		if extra == "" {
			continue
		}
		b, err := os.ReadFile(extra)
		if err != nil {
			return nil, fmt.Errorf("load policies: %w", err)
		}
		files = append(files, PolicyFile{Path: filepath.ToSlash(extra), Content: string(b)})
	}
	return Compile(files, root, opts)
}

func isPolicyDirFile(name string) bool {
	return strings.HasSuffix(name, PolicySuffix) ||
		strings.HasSuffix(name, SchemaSuffix) ||
		strings.HasSuffix(name, EntitiesSuffix)
}

// inputPos finds the position cedar-go's parser reports; it has no file name
// because the parser does not know it.
var inputPos = regexp.MustCompile(`(?:at )?<input>:(\d+):(\d+):? ?`)

// Compile parses, checks and indexes files into a snapshot. The schema is
// read first: with one, entities are parsed as Cedar's CLI parses them, by
// the schema (so {"type":…,"id":…} is a reference where the schema says so),
// and every policy and entity is validated against it.
func Compile(files []PolicyFile, root string, opts LoadOptions) (*Snapshot, error) {
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	snap := &Snapshot{
		Root:     root,
		Files:    files,
		Version:  version(files),
		LoadedAt: time.Now(),
		byID:     make(map[cedar.PolicyID]*Policy),
		entities: types.EntityMap{},
	}
	var problems []Problem
	var schemaFile *PolicyFile
	var policyFiles, entityFiles []*PolicyFile
	for i := range files {
		f := &files[i]
		switch {
		case strings.HasSuffix(f.Path, SchemaSuffix) || f.Path == filepath.ToSlash(opts.SchemaFile):
			if schemaFile != nil {
				problems = append(problems, Problem{File: f.Path, Message: fmt.Sprintf("second schema file; %s is already the schema (keep one)", schemaFile.Path)})
				continue
			}
			schemaFile = f
		case strings.HasSuffix(f.Path, EntitiesSuffix) || f.Path == filepath.ToSlash(opts.EntitiesFile):
			entityFiles = append(entityFiles, f)
		default:
			policyFiles = append(policyFiles, f)
		}
	}
	var rs *resolved.Schema
	if schemaFile != nil {
		var p *Problem
		if rs, p = loadSchema(schemaFile); p != nil {
			problems = append(problems, *p)
		}
		snap.schema, snap.schemaFile = rs, schemaFile.Path
	}

	entityFrom := map[types.EntityUID]string{}
	for _, f := range entityFiles {
		var m types.EntityMap
		var err error
		if rs != nil {
			var xm xtypes.EntityMap
			err = xm.UnmarshalJSONWithSchema([]byte(f.Content), rs)
			m = types.EntityMap(xm)
		} else {
			err = m.UnmarshalJSON([]byte(f.Content))
		}
		if err != nil {
			problems = append(problems, Problem{File: f.Path, Message: "entities: " + redactParse(err.Error())})
			continue
		}
		for uid, e := range m {
			if prev, dup := entityFrom[uid]; dup {
				problems = append(problems, Problem{File: f.Path, Message: fmt.Sprintf("entity %s is also defined in %s", uid, prev)})
				continue
			}
			entityFrom[uid] = f.Path
			snap.entities[uid] = e
		}
	}

	snap.mentions = map[string]bool{}
	for _, f := range policyFiles {
		ps, errs := parsePolicies(f, root)
		problems = append(problems, errs...)
		for _, p := range ps {
			contextReads(ast(p), snap.mentions)
			if prev, dup := snap.byID[cedar.PolicyID(p.ID)]; dup {
				problems = append(problems, Problem{File: p.File, Line: p.Line, Column: p.Column,
					Message: fmt.Sprintf("duplicate policy id %q, first defined at %s:%d:%d", p.ID, prev.File, prev.Line, prev.Column)})
				continue
			}
			snap.byID[cedar.PolicyID(p.ID)] = p
			snap.Policies = append(snap.Policies, p)
		}
	}
	switch opts.Validation {
	case "", ValidateStrict, ValidatePermissive, ValidateOff:
	default:
		return nil, fmt.Errorf("load policies: validation %q: want strict, permissive or off", opts.Validation)
	}
	if rs != nil && len(problems) == 0 && opts.Validation != ValidateOff {
		problems = append(problems, validateAll(rs, opts.Validation, schemaFile.Path, snap)...)
		snap.Schema = true
	}
	if len(problems) > 0 {
		for i := range problems {
			problems[i].Severity = SeverityError
		}
		return nil, &LoadError{Problems: problems}
	}
	snap.fileEntities = len(snap.entities)
	snap.types = map[types.EntityType]bool{}
	for uid := range snap.entities {
		snap.types[uid.Type] = true
	}
	if rs != nil {
		// The schema's actions, with the groups they are declared in
		// (action read in [readOnly]), are entities as Cedar's CLI makes
		// them: `action in Action::"readOnly"` holds for read. The schema
		// is their one source; an entities file cannot regroup them.
		for uid, a := range rs.Actions {
			snap.entities[uid] = a.Entity
		}
		snap.validator = validate.New(rs, validate.WithStrict())
	}
	sort.Slice(snap.Policies, func(i, j int) bool { return snap.Policies[i].ID < snap.Policies[j].ID })
	for _, p := range snap.Policies {
		snap.all = append(snap.all, p)
		switch {
		case p.LogOnly && p.Effect == "forbid":
			snap.logOnlyForbids = append(snap.logOnlyForbids, p)
		case p.LogOnly:
			snap.logOnlyPermits = append(snap.logOnlyPermits, p)
		case p.Effect == "forbid":
			snap.forbids = append(snap.forbids, p)
		default:
			snap.permits = append(snap.permits, p)
		}
	}
	return snap, nil
}

func parsePolicies(f *PolicyFile, root string) ([]*Policy, []Problem) {
	list, err := cedar.NewPolicyListFromBytes(f.Path, []byte(f.Content))
	if err != nil {
		p := Problem{File: f.Path, Message: strings.TrimPrefix(err.Error(), "parser error: ")}
		if m := inputPos.FindStringSubmatchIndex(p.Message); m != nil {
			p.Line, _ = strconv.Atoi(p.Message[m[2]:m[3]])
			p.Column, _ = strconv.Atoi(p.Message[m[4]:m[5]])
			p.Message = p.Message[:m[0]] + p.Message[m[1]:]
		}
		p.Message, p.Line, p.Column, p.Source = explainParse(f.Content, strings.TrimSpace(p.Message), p.Line, p.Column)
		return nil, []Problem{p}
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(f.Path, root), "/")
	out := make([]*Policy, 0, len(list))
	var problems []Problem
	for i, cp := range list {
		pos := cp.Position()
		ann := make(map[string]string)
		for k, v := range cp.Annotations() {
			ann[string(k)] = string(v)
		}
		_, stepUp := ann[AnnotationStepUp]
		p := &Policy{
			ID:          rel + ":" + strconv.Itoa(i),
			Effect:      "permit",
			StepUp:      stepUp,
			File:        f.Path,
			Line:        pos.Line,
			Column:      pos.Column,
			Annotations: ann,
			cedar:       cp,
		}
		if id, ok := ann[AnnotationID]; ok {
			p.ID = id
		}
		for k, v := range ann {
			if k == AnnotationID {
				continue
			}
			if p.reasonAnnotations == nil {
				p.reasonAnnotations = map[string]string{}
			}
			p.reasonAnnotations[k] = v
		}
		if cp.Effect() == cedar.Forbid {
			p.Effect = "forbid"
		}
		if mode, ok := ann[AnnotationMode]; ok {
			switch mode {
			case ModeLogOnly:
				p.LogOnly = true
			case ModeEnforce:
			default:
				problems = append(problems, Problem{File: f.Path, Line: pos.Line, Column: pos.Column,
					Message: fmt.Sprintf("@mode(%q): want %q or %q", mode, ModeLogOnly, ModeEnforce)})
			}
		}
		out = append(out, p)
	}
	return out, problems
}

// loadSchema parses a schema in Cedar's human format, or its JSON format
// when the file name ends in .json, and resolves it.
func loadSchema(f *PolicyFile) (*resolved.Schema, *Problem) {
	var s schema.Schema
	s.SetFilename(f.Path)
	var err error
	if strings.HasSuffix(f.Path, ".json") {
		err = s.UnmarshalJSON([]byte(f.Content))
	} else {
		err = s.UnmarshalCedar([]byte(f.Content))
	}
	if err != nil {
		return nil, &Problem{File: f.Path, Message: "schema: " + redactParse(err.Error())}
	}
	if err == nil {
		var rs *resolved.Schema
		if rs, err = s.Resolve(); err == nil {
			return rs, nil
		}
	}
	return nil, &Problem{File: f.Path, Message: "schema: " + err.Error()}
}

// validateAll checks every policy and the static entities against the
// schema, in strict mode unless told otherwise, as the Cedar CLI does.
func validateAll(rs *resolved.Schema, mode Validation, schemaPath string, snap *Snapshot) []Problem {
	opt := validate.WithStrict()
	if mode == ValidatePermissive {
		opt = validate.WithPermissive()
	}
	v := validate.New(rs, opt)
	var problems []Problem
	for _, p := range snap.Policies {
		if err := v.Policy(p.ID, (*xast.Policy)(p.cedar.AST())); err != nil {
			for _, msg := range splitJoined(err) {
				problems = append(problems, Problem{File: p.File, Line: p.Line, Column: p.Column, Message: msg})
			}
		}
	}
	if len(snap.entities) > 0 {
		if err := v.Entities(snap.entities); err != nil {
			for _, msg := range splitJoined(err) {
				problems = append(problems, Problem{File: schemaPath, Message: "entities do not match the schema: " + msg})
			}
		}
	}
	return problems
}

// splitJoined flattens an errors.Join into one message per error.
func splitJoined(err error) []string {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, splitJoined(e)...)
		}
		return out
	}
	return []string{err.Error()}
}

// version digests the files so that equal directories have equal versions,
// whatever their modification times: SHA-256 over, for each file in path
// order, the path and content, each preceded by its length.
func version(files []PolicyFile) string {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%d:%s\n%d:", len(f.Path), f.Path, len(f.Content))
		h.Write([]byte(f.Content))
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// MarshalJSON summarises a policy for status and logs, without its text.
func (p *Policy) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		ID      string `json:"id"`
		Effect  string `json:"effect"`
		StepUp  bool   `json:"step_up,omitempty"`
		LogOnly bool   `json:"log_only,omitempty"`
		File    string `json:"file"`
		Line    int    `json:"line"`
	}{p.ID, p.Effect, p.StepUp, p.LogOnly, p.File, p.Line})
}

// PolicyText finds the policy at file:line among files (as a policy-load
// record holds them) and returns its text, so that a logged decision can be
// explained by the exact policies that made it.
func PolicyText(files []PolicyFile, file string, line int) (string, bool) {
	for _, f := range files {
		if f.Path != file {
			continue
		}
		list, err := cedar.NewPolicyListFromBytes(f.Path, []byte(f.Content))
		if err != nil {
			return "", false
		}
		for _, p := range list {
			if p.Position().Line == line {
				return string(p.MarshalCedar()), true
			}
		}
	}
	return "", false
}
