package identity_test

import (
	"os"
	"testing"
	"time"

	"github.com/cedar-policy/cedar-go/types"

	"github.com/agentpdp/agentpdp/pdp/identity"
)

func u32(v uint32) *uint32 { return &v }

func TestCallers_Bind(t *testing.T) {
	cs := identity.Callers{
		{UID: u32(1000), Exe: "/usr/bin/python3*", Principals: []string{`Agent::"billing-bot"`}},
		{Cgroup: "/system.slice/agent@*.service", Principals: []string{`Agent::"ops-*"`}, DefinePrincipal: true},
	}
	if err := cs.Compile(); err != nil {
		t.Fatal(err)
	}
	agent := func(id string) types.EntityUID { return types.NewEntityUID("Agent", types.String(id)) }
	py := &identity.Caller{UID: 1000, Exe: "/usr/bin/python3.12"}
	if r := cs.Bind(py, agent("billing-bot")); r == nil || r.DefinePrincipal {
		t.Errorf("python as billing-bot: %+v", r)
	}
	for name, c := range map[string]struct {
		caller *identity.Caller
		p      types.EntityUID
	}{
		"OtherPrincipal": {py, agent("deploy-bot")},
		"OtherUID":       {&identity.Caller{UID: 1001, Exe: "/usr/bin/python3.12"}, agent("billing-bot")},
		"OtherExe":       {&identity.Caller{UID: 1000, Exe: "/usr/bin/curl"}, agent("billing-bot")},
		"OtherType":      {py, types.NewEntityUID("User", "billing-bot")},
		"NoCaller":       {nil, agent("billing-bot")},
		"GlobNoSlash":    {&identity.Caller{Cgroup: "/system.slice/agent@x.service"}, agent("ops-a/b")},
	} {
		if r := cs.Bind(c.caller, c.p); r != nil {
			t.Errorf("%s: bound by %+v", name, r)
		}
	}
	if r := cs.Bind(&identity.Caller{UID: 5, Cgroup: "/system.slice/agent@1.service"}, agent("ops-east")); r == nil || !r.DefinePrincipal {
		t.Errorf("cgroup rule: %+v", r)
	}
	for name, bad := range map[string]identity.Callers{
		"MatchesAll":   {{Principals: []string{`Agent::"a"`}}},
		"NoPrincipals": {{UID: u32(1)}},
		"BadUID":       {{UID: u32(1), Principals: []string{`billing-bot`}}},
		"BadGlob":      {{Exe: "[", Principals: []string{`Agent::"a"`}}},
	} {
		if err := bad.Compile(); err == nil {
			t.Errorf("%s: compiled", name)
		}
	}
}

func TestReadCgroup(t *testing.T) {
	if _, err := os.Stat("/proc/self/cgroup"); err != nil {
		t.Skip("no /proc")
	}
	if got := identity.ReadCgroup(int32(os.Getpid())); got == "" || got[0] != '/' {
		t.Errorf("ReadCgroup(self) = %q, want a path", got)
	}
	if got := identity.ReadCgroup(-1); got != "" {
		t.Errorf("ReadCgroup(-1) = %q", got)
	}
}

func TestSharedTracker(t *testing.T) {
	tr := identity.NewSharedTracker(time.Minute)
	now := t0
	if tr.Observe(`Agent::"a"`, 1000, "/usr/bin/python3", now) {
		t.Error("first use flagged")
	}
	if tr.Observe(`Agent::"a"`, 1000, "/usr/bin/python3", now.Add(time.Second)) {
		t.Error("same caller flagged")
	}
	if !tr.Observe(`Agent::"a"`, 1000, "/usr/bin/node", now.Add(2*time.Second)) {
		t.Error("second executable not flagged")
	}
	if !tr.Observe(`Agent::"a"`, 1001, "/usr/bin/python3", now.Add(3*time.Second)) {
		t.Error("second uid not flagged")
	}
	if tr.Observe(`Agent::"b"`, 1001, "/usr/bin/node", now.Add(3*time.Second)) {
		t.Error("another principal flagged")
	}
	if tr.Observe(`Agent::"a"`, 1002, "/usr/bin/x", now.Add(5*time.Minute)) {
		t.Error("flagged after the window")
	}
}
