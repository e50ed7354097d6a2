package policy

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/cedar-policy/cedar-go/types"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

// Lint reports what is legal Cedar but almost certainly a mistake, as
// warnings: policies that can never apply, permits that a forbid without
// conditions always overrides, and schema actions no policy mentions.
func Lint(s *Snapshot) []Problem {
	var out []Problem
	warn := func(p *Policy, format string, args ...any) {
		out = append(out, Problem{File: p.File, Line: p.Line, Column: p.Column, Severity: SeverityWarning, Message: fmt.Sprintf(format, args...)})
	}
	for _, p := range s.Policies {
		if why := neverApplies(ast(p)); why != "" {
			warn(p, "%s %s can never apply: %s", p.Effect, p.ID, why)
		}
	}
	for _, permit := range s.permits {
		for _, forbid := range s.forbids {
			if forbid.StepUp || len(ast(forbid).Conditions) > 0 || !coversPolicy(ast(forbid), ast(permit)) {
				continue
			}
			warn(permit, "permit %s can never allow: forbid %s (%s:%d) denies everything it permits", permit.ID, forbid.ID, forbid.File, forbid.Line)
			break
		}
	}
	for _, f := range s.Files {
		if strings.HasSuffix(f.Path, ".cedar") {
			out = append(out, lintText(f)...)
		}
	}
	if s.schema != nil {
		for _, action := range unusedActions(s) {
			out = append(out, Problem{File: s.schemaFile, Severity: SeverityWarning,
				Message: fmt.Sprintf("action %s is in the schema but no policy names it", action)})
		}
	}
	return out
}

func ast(p *Policy) *xast.Policy { return (*xast.Policy)(p.cedar.AST()) }

// neverApplies says why a policy can never hold, or "".
func neverApplies(p *xast.Policy) string {
	if set, ok := p.Action.(xast.ScopeTypeInSet); ok && len(set.Entities) == 0 {
		return "its action scope is an empty set"
	}
	for _, c := range p.Conditions {
		v, ok := c.Body.(xast.NodeValue)
		if !ok {
			continue
		}
		b, ok := v.Value.(types.Boolean)
		if !ok {
			continue
		}
		if c.Condition == xast.ConditionWhen && !bool(b) {
			return "its condition is when { false }"
		}
		if c.Condition == xast.ConditionUnless && bool(b) {
			return "its condition is unless { true }"
		}
	}
	return ""
}

// coversPolicy: every request in p's scope is in f's scope.
func coversPolicy(f, p *xast.Policy) bool {
	return coversScope(f.Principal, p.Principal) && coversScope(f.Action, p.Action) && coversScope(f.Resource, p.Resource)
}

func coversScope(f, p xast.IsScopeNode) bool {
	if _, all := f.(xast.ScopeTypeAll); all || reflect.DeepEqual(f, p) {
		return true
	}
	switch f := f.(type) {
	case xast.ScopeTypeIs:
		switch p := p.(type) {
		case xast.ScopeTypeEq:
			return p.Entity.Type == f.Type
		case xast.ScopeTypeIsIn:
			return p.Type == f.Type
		}
	case xast.ScopeTypeInSet:
		switch p := p.(type) {
		case xast.ScopeTypeEq:
			return slices.Contains(f.Entities, p.Entity)
		case xast.ScopeTypeInSet:
			for _, e := range p.Entities {
				if !slices.Contains(f.Entities, e) {
					return false
				}
			}
			return len(p.Entities) > 0
		}
	}
	return false
}

// unusedActions lists the schema's actions that no policy's action scope
// can match, sorted.
func unusedActions(s *Snapshot) []string {
	used := map[types.EntityUID]bool{}
	var groups []types.EntityUID
	for _, p := range s.Policies {
		switch a := ast(p).Action.(type) {
		case xast.ScopeTypeAll:
			return nil // a policy on every action uses them all
		case xast.ScopeTypeEq:
			used[a.Entity] = true
		case xast.ScopeTypeInSet:
			for _, e := range a.Entities {
				used[e] = true
				groups = append(groups, e)
			}
		case xast.ScopeTypeIn:
			used[a.Entity] = true
			groups = append(groups, a.Entity)
		}
	}
	var out []string
	for uid := range s.schema.Actions {
		if !used[uid] && !inGroups(s, uid, groups, 0) {
			out = append(out, uid.String())
		}
	}
	slices.Sort(out)
	return out
}

// inGroups reports whether action uid is a member, transitively, of one of
// groups (action in Action::"group" matches its members).
func inGroups(s *Snapshot, uid types.EntityUID, groups []types.EntityUID, depth int) bool {
	a, ok := s.schema.Actions[uid]
	if !ok || depth > 32 {
		return false
	}
	for parent := range a.Entity.Parents.All() {
		if slices.Contains(groups, parent) || inGroups(s, parent, groups, depth+1) {
			return true
		}
	}
	return false
}

// SchemaGaps says what of a request the schema does not declare: its action,
// or the entity type of its principal or resource; "" when there is no
// schema or it declares them all. A decision's no_permit reason carries it.
func (s *Snapshot) SchemaGaps(principal, action, resource types.EntityUID) string {
	if s.schema == nil {
		return ""
	}
	var gaps []string
	if _, ok := s.schema.Actions[action]; !ok {
		gaps = append(gaps, fmt.Sprintf("the schema declares no action %s", action))
	}
	for _, e := range []struct {
		role string
		uid  types.EntityUID
	}{{"principal", principal}, {"resource", resource}} {
		_, entity := s.schema.Entities[e.uid.Type]
		_, enum := s.schema.Enums[e.uid.Type]
		if !entity && !enum {
			gaps = append(gaps, fmt.Sprintf("the schema declares no entity type %s (the %s's)", e.uid.Type, e.role))
		}
	}
	return strings.Join(gaps, "; ")
}
