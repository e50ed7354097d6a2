package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/agentpdp/agentpdp/pdp"
)

func newValidateCmd() *cobra.Command {
	var policies, schema, validation, format string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "validate --policies DIR [--schema FILE]",
		Short: "Parse and validate policies like a compiler: errors exit 1, warnings do not; file:line:col messages",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if policies == "" {
				return usagef("validate: --policies is required")
			}
			if asJSON {
				format = "json"
			}
			if format != "text" && format != "json" {
				return usagef("validate: --format %q: want text or json", format)
			}
			switch pdp.Validation(validation) {
			case pdp.ValidateStrict, pdp.ValidatePermissive:
			default:
				return usagef("validate: --validation %q: want strict or permissive", validation)
			}
			snap, err := pdp.LoadDir(policies, pdp.LoadOptions{SchemaFile: schema, Validation: pdp.Validation(validation)})
			var le *pdp.LoadError
			var problems []pdp.Problem
			switch {
			case errors.As(err, &le):
				problems = le.Problems
			case err != nil:
				return exitError{exitFail, err}
			default:
				problems = pdp.Lint(snap)
			}
			out := cmd.OutOrStdout()
			if format == "json" {
				enc := json.NewEncoder(out)
				for _, p := range problems {
					enc.Encode(p)
				}
			} else {
				for _, p := range problems {
					fmt.Fprintln(cmd.ErrOrStderr(), p)
				}
			}
			if le != nil {
				return exitError{exitFail, fmt.Errorf("%d error(s) in %s", len(le.Problems), policies)}
			}
			if format == "json" {
				return json.NewEncoder(out).Encode(map[string]any{
					"ok": true, "policy_version": snap.Version, "policies": len(snap.Policies),
					"files": len(snap.Files), "schema": snap.Schema, "warnings": len(problems),
				})
			}
			validated := "no schema"
			if snap.Schema {
				validated = "validated against the schema (" + validation + ")"
			}
			fmt.Fprintf(out, "ok: %d policies in %d files, %s, %d warnings; version %s\n",
				len(snap.Policies), len(snap.Files), validated, len(problems), snap.Version)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&policies, "policies", "", "policy `directory` (required)")
	f.StringVar(&schema, "schema", "", "schema `file`, if not in the directory")
	f.StringVar(&validation, "validation", "strict", "schema validation mode: strict or permissive")
	f.StringVar(&format, "format", "text", "text (file:line:col: messages on stderr) or json (one object per line)")
	f.BoolVar(&asJSON, "json", false, "the same as --format json")
	return cmd
}
