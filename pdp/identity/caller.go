package identity

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/cedar-policy/cedar-go/types"
)

// Caller is the process on the other end of the socket as the kernel
// reported it: SO_PEERCRED's pid, uid and gid, the executable /proc links
// its pid to, and its cgroup (a container's or a systemd unit's).
type Caller struct {
	PID    int32
	UID    uint32
	GID    uint32
	Exe    string
	Cgroup string
}

// CallerRule binds callers to the principals they may act as. Every field
// set must match; Exe and Cgroup are path.Match globs.
type CallerRule struct {
	UID    *uint32 `yaml:"uid"`
	GID    *uint32 `yaml:"gid"`
	Exe    string  `yaml:"exe"`
	Cgroup string  `yaml:"cgroup"`
	// Principals are Cedar entity uids, Agent::"billing-bot"; the id may
	// be a path.Match glob (Agent::"billing-*"; * does not cross a /).
	Principals []string `yaml:"principals"`
	// DefinePrincipal lets these callers send the principal's own entity
	// inline (request_entities: unknown_only refuses it otherwise).
	DefinePrincipal bool `yaml:"define_principal"`

	principals []types.EntityUID
}

// Callers are the configured rules, in order.
type Callers []CallerRule

// Compile checks every rule and returns an error naming the bad one.
func (cs Callers) Compile() error {
	for i := range cs {
		r := &cs[i]
		field := fmt.Sprintf("callers[%d]", i)
		if r.UID == nil && r.GID == nil && r.Exe == "" && r.Cgroup == "" {
			return fmt.Errorf("%s: matches every caller; set uid, gid, exe or cgroup", field)
		}
		for name, g := range map[string]string{"exe": r.Exe, "cgroup": r.Cgroup} {
			if _, err := path.Match(g, ""); err != nil {
				return fmt.Errorf("%s.%s %q: %w", field, name, g, err)
			}
		}
		if len(r.Principals) == 0 {
			return fmt.Errorf("%s.principals: empty", field)
		}
		r.principals = r.principals[:0]
		for j, p := range r.Principals {
			var uid types.EntityUID
			if err := uid.UnmarshalCedar([]byte(p)); err != nil {
				return fmt.Errorf("%s.principals[%d] %q: want Type::\"id\"", field, j, p)
			}
			if _, err := path.Match(string(uid.ID), ""); err != nil {
				return fmt.Errorf("%s.principals[%d] %q: %w", field, j, p, err)
			}
			r.principals = append(r.principals, uid)
		}
	}
	return nil
}

func (r *CallerRule) matches(c *Caller) bool {
	return (r.UID == nil || *r.UID == c.UID) &&
		(r.GID == nil || *r.GID == c.GID) &&
		(r.Exe == "" || globMatch(r.Exe, c.Exe)) &&
		(r.Cgroup == "" || globMatch(r.Cgroup, c.Cgroup))
}

func (r *CallerRule) lists(p types.EntityUID) bool {
	for _, q := range r.principals {
		if q.Type == p.Type && (q.ID == p.ID || globMatch(string(q.ID), string(p.ID))) {
			return true
		}
	}
	return false
}

// Bind returns the first rule that matches c and lists principal, or nil:
// the caller may not act as principal. A nil caller (no kernel credentials,
// as in-process) matches no rule.
func (cs Callers) Bind(c *Caller, principal types.EntityUID) *CallerRule {
	if c == nil {
		return nil
	}
	for i := range cs {
		if cs[i].matches(c) && cs[i].lists(principal) {
			return &cs[i]
		}
	}
	return nil
}

// ReadCgroup returns pid's cgroup path: the unified (v2) hierarchy's, else
// the systemd v1 hierarchy's, else "" (no /proc, or the process is gone).
func ReadCgroup(pid int32) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/cgroup")
	if err != nil {
		return ""
	}
	v1 := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path
		id, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		ctrl, p, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		if id == "0" && ctrl == "" {
			return p
		}
		if ctrl == "name=systemd" {
			v1 = p
		}
	}
	return v1
}
