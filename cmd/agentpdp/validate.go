package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/agentpdp/agentpdp/pdp"
)

func newValidateCmd() *cobra.Command {
	var policies, schema string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "validate --policies DIR [--schema FILE]",
		Short: "Parse and validate a policy directory; exit 1 with file:line:col messages on problems",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if policies == "" {
				return usagef("validate: --policies is required")
			}
			snap, err := pdp.LoadDir(policies, pdp.LoadOptions{SchemaFile: schema})
			var le *pdp.LoadError
			switch {
			case errors.As(err, &le):
				if asJSON {
					enc := json.NewEncoder(cmd.OutOrStdout())
					for _, p := range le.Problems {
						enc.Encode(p)
					}
				} else {
					for _, p := range le.Problems {
						fmt.Fprintln(cmd.ErrOrStderr(), p)
					}
				}
				return exitError{exitFail, fmt.Errorf("%d problem(s) in %s", len(le.Problems), policies)}
			case err != nil:
				return exitError{exitFail, err}
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{
					"ok": true, "policy_version": snap.Version, "policies": len(snap.Policies),
					"files": len(snap.Files), "schema": snap.Schema,
				})
			}
			validated := "no schema"
			if snap.Schema {
				validated = "validated against the schema"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %d policies in %d files, %s; version %s\n",
				len(snap.Policies), len(snap.Files), validated, snap.Version)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&policies, "policies", "", "policy `directory` (required)")
	f.StringVar(&schema, "schema", "", "schema `file`, if not in the directory")
	f.BoolVar(&asJSON, "json", false, "one JSON object per line")
	return cmd
}
