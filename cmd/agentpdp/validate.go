package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/agentpdp/agentpdp/internal/plural"
	"github.com/agentpdp/agentpdp/pdp/policy"
)

// validateCmd is agentpdp validate: policies checked like a compiler would.
type validateCmd struct {
	streams
	policies, schema, validation, format string
	asJSON                               bool
}

func newValidateCmd() *cobra.Command {
	c := &validateCmd{}
	cmd := &cobra.Command{
		Use:   "validate [--policies DIR] [--schema FILE]",
		Short: "Parse and validate policies like a compiler: errors exit 1, warnings do not; file:line:col messages",
		Args:  noArgs,
		RunE:  runE(c, nil),
	}
	f := cmd.Flags()
	f.StringVar(&c.policies, "policies", DefaultConfig().Policies, "policy `directory`")
	f.StringVar(&c.schema, "schema", "", "schema `file`, if not in the directory")
	f.StringVar(&c.validation, "validation", "strict", "schema validation mode: strict or permissive")
	f.StringVar(&c.format, "format", "text", "text (file:line:col: messages on stderr) or json (one object per line)")
	f.BoolVar(&c.asJSON, "json", false, "the same as --format json")
	return cmd
}

func (c *validateCmd) Run(ctx context.Context) error {
	if c.asJSON {
		c.format = "json"
	}
	if c.format != "text" && c.format != "json" {
		return usagef("validate: --format %q: want text or json", c.format)
	}
	switch policy.Validation(c.validation) {
	case policy.ValidateStrict, policy.ValidatePermissive:
	default:
		return usagef("validate: --validation %q: want strict or permissive", c.validation)
	}
	if err := needDir("validate", "policies", c.policies); err != nil {
		return err
	}
	snap, err := policy.LoadDir(c.policies, policy.LoadOptions{SchemaFile: c.schema, Validation: policy.Validation(c.validation)})
	var le *policy.LoadError
	var problems []policy.Problem
	switch {
	case errors.As(err, &le):
		problems = le.Problems
	case err != nil:
		return exitError{exitFail, err}
	default:
		problems = policy.Lint(snap)
	}
	if c.format == "json" {
		enc := json.NewEncoder(c.stdout)
		for _, p := range problems {
			enc.Encode(p)
		}
	} else {
		for _, p := range problems {
			fmt.Fprintln(c.stderr, p)
			if p.Source != "" {
				fmt.Fprintln(c.stderr, p.Source)
			}
		}
	}
	if le != nil {
		return exitError{exitFail, fmt.Errorf("%s in %s; fix %s, then run agentpdp validate again", plural.Count(len(le.Problems), "error", "errors"), c.policies, plural.Word(len(le.Problems), "it", "them"))}
	}
	if c.format == "json" {
		return json.NewEncoder(c.stdout).Encode(map[string]any{
			"ok": true, "policy_version": snap.Version, "policies": len(snap.Policies),
			"files": len(snap.Files), "schema": snap.Schema, "warnings": len(problems),
		})
	}
	validated := "no schema"
	if snap.Schema {
		validated = "validated against the schema (" + c.validation + ")"
	}
	fmt.Fprintf(c.stdout, "ok: %s in %s, %s, %s; version %s\n",
		plural.Count(len(snap.Policies), "policy", "policies"), plural.Count(len(snap.Files), "file", "files"), validated, plural.Count(len(problems), "warning", "warnings"), snap.Version)
	return nil
}

// loadFailed is a policy load error as the CLI shows it: each problem with
// its source lines and caret, and what to run next.
func loadFailed(dir string, err error) error {
	var le *policy.LoadError
	if !errors.As(err, &le) {
		return err
	}
	var b strings.Builder
	for i, p := range le.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.String())
		if p.Source != "" {
			b.WriteString("\n" + p.Source)
		}
	}
	fmt.Fprintf(&b, "\nfix these, then check with: agentpdp validate --policies %s", dir)
	return errors.New(b.String())
}
