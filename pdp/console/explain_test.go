package console

import (
	"encoding/json"
	"testing"

	"github.com/agentpdp/agentpdp/pdp/policy"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

func TestFacts_Sources(t *testing.T) {
	source := func(fs []fact, name string) string {
		for _, f := range fs {
			if f.Name == name {
				return f.Source
			}
		}
		return ""
	}
	rec := &wire.DecisionRecord{Principal: `Agent::"a"`, Peer: &wire.Peer{PID: 7, UID: 1000, Exe: "/usr/bin/python3"},
		Request:  &wire.Request{Context: json.RawMessage(`{"args":{}}`), Entities: []wire.Entity{{UID: mustRef(t, `Agent::"a"`)}}},
		Provided: []wire.Entity{{UID: mustRef(t, `Team::"t"`)}}}
	fs := facts(rec)
	if got := source(fs, "principal"); got != "claimed (request)" {
		t.Errorf("principal without a token: %q", got)
	}
	if got := source(fs, "caller"); got != "attested (kernel, SO_PEERCRED)" {
		t.Errorf("caller: %q", got)
	}
	var inline, provided bool
	for _, f := range fs {
		inline = inline || f.Name == "entity" && f.Source == "claimed (request, inline)"
		provided = provided || f.Name == "entity" && f.Source == "trusted (entity provider)"
	}
	if !inline || !provided {
		t.Errorf("entity sources: %+v", fs)
	}

	rec.Request.Context = json.RawMessage(`{"identity":{"verified":true,"issuer":"https://idp","subject":"a","scopes":["x"]}}`)
	fs = facts(rec)
	if got := source(fs, "principal"); got != "verified (bound to the token)" {
		t.Errorf("principal with a verified token: %q", got)
	}
	if got := source(fs, "identity"); got != "verified (token checked by the daemon)" {
		t.Errorf("identity: %q", got)
	}
	rec.Request.Context = json.RawMessage(`{"identity":{"verified":false,"subject":"a"}}`)
	if got := source(facts(rec), "principal"); got != "claimed (request)" {
		t.Errorf("principal with an unverified identity: %q", got)
	}
}

func TestMarkedFiles(t *testing.T) {
	f := policy.PolicyFile{Path: "p.cedar", Content: "// header\n\n@id(\"a\")\npermit (principal, action, resource);\n\n// b's comment\n@id(\"b\")\nforbid (\n  principal,\n  action,\n  resource\n);\n"}
	views := markedFiles([]policy.PolicyFile{f, {Path: "other.cedar", Content: "permit (principal, action, resource);"}},
		[]decidingPolicy{{ID: "b", File: "p.cedar", Line: 7}})
	if len(views) != 1 || views[0].Path != "p.cedar" {
		t.Fatalf("files shown: %+v", views)
	}
	var marked []int
	for _, l := range views[0].Lines {
		if l.Marked {
			marked = append(marked, l.N)
		}
	}
	if len(marked) != 6 || marked[0] != 7 || marked[5] != 12 {
		t.Errorf("marked lines %v, want 7 to 12 (b, from its annotation to its semicolon)", marked)
	}
	if views[0].Lines[6].Starts != "b" {
		t.Errorf("line 7 does not start b: %+v", views[0].Lines[6])
	}
}

func mustRef(t *testing.T, s string) wire.EntityRef {
	t.Helper()
	r, err := wire.ParseEntityRef(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
