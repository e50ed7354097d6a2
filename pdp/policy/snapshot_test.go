package policy_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/pdp/policy"
)

func loadErr(t *testing.T, files map[string]string) *policy.LoadError {
	t.Helper()
	dir := t.TempDir()
	pdptest.WriteFiles(t, dir, files)
	_, err := policy.LoadDir(dir, policy.LoadOptions{})
	var le *policy.LoadError
	if !errors.As(err, &le) {
		t.Fatalf("want a LoadError, got %v", err)
	}
	return le
}

func TestLoad_PolicyIDs(t *testing.T) {
	dir := t.TempDir()
	pdptest.WriteFiles(t, dir, map[string]string{
		"a.cedar":     "permit (principal, action, resource);\n@id(\"named\")\nforbid (principal, action, resource);\npermit (principal, action, resource);",
		"sub/b.cedar": "permit (principal, action, resource);",
	})
	snap, err := policy.LoadDir(dir, policy.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range snap.Policies {
		ids = append(ids, p.ID)
	}
	want := []string{"a.cedar:0", "a.cedar:2", "named", "sub/b.cedar:0"}
	if !slices.Equal(ids, want) {
		t.Errorf("ids: got %v, want %v", ids, want)
	}
	if p := snap.Policy("named"); p == nil || p.Line != 2 || p.Effect != "forbid" {
		t.Errorf("named policy: got %+v, want forbid at line 2", p)
	}
}

func TestLoad_DuplicateIDNamesBothPlaces(t *testing.T) {
	le := loadErr(t, map[string]string{
		"a.cedar": "@id(\"x\")\npermit (principal, action, resource);",
		"b.cedar": "\n\n@id(\"x\")\nforbid (principal, action, resource);",
	})
	msg := le.Error()
	if !strings.Contains(msg, `duplicate policy id "x"`) || !strings.Contains(msg, "a.cedar:1:1") || !strings.Contains(msg, "b.cedar:3") {
		t.Errorf("got %q, want both places named", msg)
	}
}

func TestLoad_ParseErrorHasFileLineColumn(t *testing.T) {
	le := loadErr(t, map[string]string{
		"ok.cedar":     "permit (principal, action, resource);",
		"broken.cedar": "permit (principal, action, resource);\n\nforbid (principal, action resource);",
	})
	if len(le.Problems) != 1 {
		t.Fatalf("problems: %+v", le.Problems)
	}
	p := le.Problems[0]
	if !strings.HasSuffix(p.File, "broken.cedar") || p.Line != 3 || p.Column == 0 {
		t.Errorf("got %+v, want broken.cedar:3:col", p)
	}
	if strings.Contains(p.String(), "<input>") {
		t.Errorf("message still names <input>: %s", p)
	}
}

func TestLoad_EveryBrokenFileReported(t *testing.T) {
	le := loadErr(t, map[string]string{
		"a.cedar": "permit (",
		"b.cedar": "forbid (principal action, resource);",
	})
	if len(le.Problems) != 2 {
		t.Errorf("want a problem per broken file, got %+v", le.Problems)
	}
}

func TestLoad_SchemaValidation(t *testing.T) {
	t.Run("Valid", func(t *testing.T) {
		dir := t.TempDir()
		pdptest.WriteFiles(t, dir, map[string]string{
			"s.cedarschema": pdptest.TestSchema,
			"p.cedar":       `permit (principal is Agent, action == Action::"invoke_tool", resource) when { principal.trust == "high" };`,
		})
		snap, err := policy.LoadDir(dir, policy.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !snap.Schema {
			t.Error("snapshot not marked as validated")
		}
	})
	t.Run("UnknownAttributeRefused", func(t *testing.T) {
		le := loadErr(t, map[string]string{
			"s.cedarschema": pdptest.TestSchema,
			"p.cedar":       "\n" + `permit (principal is Agent, action == Action::"invoke_tool", resource) when { principal.trst == "high" };`,
		})
		p := le.Problems[0]
		if !strings.HasSuffix(p.File, "p.cedar") || p.Line != 2 || !strings.Contains(p.Message, "trst") {
			t.Errorf("got %s, want p.cedar:2 naming the attribute", p)
		}
	})
	t.Run("UnknownActionRefused", func(t *testing.T) {
		loadErr(t, map[string]string{
			"s.cedarschema": pdptest.TestSchema,
			"p.cedar":       `permit (principal, action == Action::"delete_everything", resource);`,
		})
	})
	t.Run("EntitiesChecked", func(t *testing.T) {
		le := loadErr(t, map[string]string{
			"s.cedarschema":   pdptest.TestSchema,
			"p.cedar":         `permit (principal, action == Action::"invoke_tool", resource);`,
			"x.entities.json": `[{"uid":{"type":"Agent","id":"a"},"attrs":{"trust":5},"parents":[]}]`,
		})
		if !strings.Contains(le.Error(), "entities") {
			t.Errorf("got %v", le)
		}
	})
	t.Run("SecondSchemaRefused", func(t *testing.T) {
		le := loadErr(t, map[string]string{"a.cedarschema": pdptest.TestSchema, "b.cedarschema": pdptest.TestSchema})
		if !strings.Contains(le.Error(), "second schema") {
			t.Errorf("got %v", le)
		}
	})
}

func TestLoad_DuplicateEntityAcrossFiles(t *testing.T) {
	le := loadErr(t, map[string]string{
		"a.entities.json": `[{"uid":{"type":"Agent","id":"a"},"attrs":{},"parents":[]}]`,
		"b.entities.json": `[{"uid":{"type":"Agent","id":"a"},"attrs":{},"parents":[]}]`,
	})
	if !strings.Contains(le.Error(), `Agent::"a"`) || !strings.Contains(le.Error(), "a.entities.json") {
		t.Errorf("got %v", le)
	}
}

func TestLoad_Version(t *testing.T) {
	files := map[string]string{"a.cedar": "permit (principal, action, resource);", "b.cedar": ""}
	d1, d2 := t.TempDir(), t.TempDir()
	pdptest.WriteFiles(t, d1, files)
	pdptest.WriteFiles(t, d2, files)
	s1, err := policy.LoadDir(d1, policy.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Another directory name, other mtimes: the version is over contents and
	// relative paths as shown, so compare through the same root name.
	s2, err := policy.LoadFS(os.DirFS(d2), filepath.ToSlash(filepath.Clean(d1)), policy.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s1.Version != s2.Version || !strings.HasPrefix(s1.Version, "sha256:") {
		t.Errorf("equal directories: %s != %s", s1.Version, s2.Version)
	}
	pdptest.WriteFiles(t, d1, map[string]string{"b.cedar": " "})
	s3, _ := policy.LoadDir(d1, policy.LoadOptions{})
	if s3.Version == s1.Version {
		t.Error("version did not change with content")
	}
}

func TestLoad_IgnoresHiddenAndForeignFiles(t *testing.T) {
	dir := t.TempDir()
	pdptest.WriteFiles(t, dir, map[string]string{
		"a.cedar":         "permit (principal, action, resource);",
		".a.cedar.swp":    "garbage (",
		".hidden/x.cedar": "garbage (",
		"README.md":       "not policy",
		"tests/case.yaml": "x: 1",
		"a.cedar~":        "garbage (",
	})
	snap, err := policy.LoadDir(dir, policy.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Files) != 1 || len(snap.Policies) != 1 {
		t.Errorf("files: %+v", snap.Files)
	}
}

func TestLoad_ReadsSymlinkedFiles(t *testing.T) {
	// Kubernetes mounts ConfigMaps as symlinks into a hidden ..data directory.
	dir := t.TempDir()
	pdptest.WriteFiles(t, dir, map[string]string{"..2026_11_27/a.cedar": "permit (principal, action, resource);"})
	if err := os.Symlink("..2026_11_27", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/a.cedar", filepath.Join(dir, "a.cedar")); err != nil {
		t.Fatal(err)
	}
	snap, err := policy.LoadDir(dir, policy.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Policies) != 1 || snap.Policies[0].ID != "a.cedar:0" {
		t.Errorf("policies: %+v", snap.Policies)
	}
}

func TestLint(t *testing.T) {
	dir := t.TempDir()
	pdptest.WriteFiles(t, dir, map[string]string{
		"s.cedarschema": pdptest.TestSchema + "\naction read_secrets appliesTo { principal: Agent, resource: Tool };\naction group;\naction grouped in [group] appliesTo { principal: Agent, resource: Tool };",
		"p.cedar": `@id("reads") permit (principal is Agent, action == Action::"invoke_tool", resource);
@id("dead") permit (principal, action == Action::"invoke_tool", resource) when { false };
@id("freeze") forbid (principal is Agent, action == Action::"invoke_tool", resource);
@id("grouped") permit (principal, action in Action::"group", resource);
@id("step") @step_up("x") forbid (principal, action in Action::"group", resource);`,
	})
	snap, err := policy.LoadDir(dir, policy.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range policy.Lint(snap) {
		if p.Severity != policy.SeverityWarning {
			t.Errorf("not a warning: %s", p)
		}
		got = append(got, p.String())
	}
	want := []string{
		"p.cedar:2:1: warning: permit dead can never apply: its condition is when { false }",
		"p.cedar:1:1: warning: permit reads can never allow: forbid freeze",
		`s.cedarschema: warning: action Action::"read_secrets" is in the schema but no policy names it`,
	}
	if len(got) != len(want) {
		t.Fatalf("warnings:\n%s", strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("warning %d: got %q, want %q", i, got[i], want[i])
		}
	}
	// The default pack is clean.
	pack, err := policy.LoadDir("../../policies", policy.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ws := policy.Lint(pack); len(ws) != 0 {
		t.Errorf("default pack warnings: %v", ws)
	}
}

func TestLoad_UnknownModeRefused(t *testing.T) {
	le := loadErr(t, map[string]string{"p.cedar": `@mode("dry-run") permit (principal, action, resource);`})
	if !strings.Contains(le.Error(), `@mode("dry-run")`) {
		t.Errorf("unknown mode: %v", le)
	}
}

// Mentions reads the syntax tree: a key read as an attribute of the
// context however it is spelled, or the context used whole; not a word in
// a comment or a string, nor an attribute of the same name deeper down.
func TestSnapshot_Mentions(t *testing.T) {
	for _, tt := range []struct {
		policy        string
		caller, ident bool
	}{
		{`permit (principal, action, resource) when { context.caller.uid == 0 };`, true, false},
		{`permit (principal, action, resource) when { context["c\u{61}ller"]["uid"] == 0 };`, true, false},
		{`permit (principal, action, resource) when { context has identity };`, false, true},
		{`permit (principal, action, resource) when { context has identity.verified };`, false, true},
		{`permit (principal, action, resource) when { context == {"a": 1} };`, true, true},
		{`permit (principal, action, resource) when { [context].contains({"a": 1}) };`, true, true},
		{`permit (principal, action, resource) when { principal.caller == "x" && context.args.identity == 1 };`, false, false},
		{"// context.caller and context.identity\npermit (principal, action, resource) when { context.note == \"caller identity\" };", false, false},
	} {
		snap, err := policy.Compile([]policy.PolicyFile{{Path: "p.cedar", Content: tt.policy}}, "", policy.LoadOptions{Validation: policy.ValidateOff})
		if err != nil {
			t.Fatalf("%s: %v", tt.policy, err)
		}
		if got, gotID := snap.Mentions("caller"), snap.Mentions("identity"); got != tt.caller || gotID != tt.ident {
			t.Errorf("%s: caller %v identity %v, want %v %v", tt.policy, got, gotID, tt.caller, tt.ident)
		}
	}
}
