package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// versionCmd is agentpdp version: what this binary was built from.
type versionCmd struct {
	streams
	asJSON bool
}

func newVersionCmd() *cobra.Command {
	c := &versionCmd{}
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the module version, VCS commit, Go version and cedar-go version this binary was built from",
		Args:  noArgs,
		RunE:  runE(c, nil),
	}
	cmd.Flags().BoolVar(&c.asJSON, "json", false, "one JSON object")
	return cmd
}

func (c *versionCmd) Run(context.Context) error {
	v := readVersion()
	if c.asJSON {
		return json.NewEncoder(c.stdout).Encode(v)
	}
	v.print(c.stdout)
	return nil
}

// buildVersion is what runtime/debug.ReadBuildInfo says about the binary.
type buildVersion struct {
	Version  string `json:"version"`          // the module version: a tag, a pseudo-version, or (devel)
	Commit   string `json:"commit,omitempty"` // vcs.revision, when built from a checkout
	Time     string `json:"commit_time,omitempty"`
	Modified bool   `json:"modified,omitempty"` // the checkout had uncommitted changes
	Go       string `json:"go"`
	CedarGo  string `json:"cedar_go"`
}

func readVersion() buildVersion {
	v := buildVersion{Version: "(unknown)", Go: runtime.Version(), CedarGo: "(unknown)"}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if info.Main.Version != "" {
		v.Version = info.Main.Version
	}
	v.Go = info.GoVersion
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	for _, d := range info.Deps {
		if d.Path == "github.com/cedar-policy/cedar-go" {
			v.CedarGo = d.Version
			if d.Replace != nil {
				v.CedarGo += " => " + d.Replace.Path + " " + d.Replace.Version
			}
		}
	}
	return v
}

func (v buildVersion) print(w io.Writer) {
	fmt.Fprintf(w, "agentpdp %s\n", v.Version)
	if v.Commit != "" {
		commit := v.Commit
		if v.Time != "" {
			commit += " (" + v.Time + ")"
		}
		if v.Modified {
			commit += " with uncommitted changes"
		}
		fmt.Fprintf(w, "commit   %s\n", commit)
	}
	fmt.Fprintf(w, "go       %s\ncedar-go %s\n", v.Go, v.CedarGo)
}
