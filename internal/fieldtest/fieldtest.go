// Package fieldtest makes decision rows that differ in every stored field of
// the record (wire.RecordFields), and a decisionlog.Filter on each field,
// for the tests of the stores that query them: the SQLite log and the
// fleet's PostgreSQL.
package fieldtest

import (
	"encoding/json"
	"fmt"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// Body is the body of decision row i: every field of wire.RecordFields at
// its path, with a value of its own for each i. The shadow decision is
// decision 0's in every row, so only rows after the first part from it.
func Body(i int) []byte {
	root := map[string]any{}
	for _, f := range wire.RecordFields {
		m, ms := root, f.Members()
		for _, k := range ms[:len(ms)-1] {
			next, _ := m[k].(map[string]any)
			if next == nil {
				next = map[string]any{}
				m[k] = next
			}
			m = next
		}
		m[ms[len(ms)-1]] = value(f, i)
	}
	b, err := json.Marshal(root)
	if err != nil {
		panic(err)
	}
	return b
}

func value(f wire.Field, i int) any {
	switch f {
	case wire.FieldPeerUID:
		return uint32(1000 + i)
	case wire.FieldPrincipal, wire.FieldAction, wire.FieldResource:
		return fmt.Sprintf(`T::"%s-%d"`, f.Name, i) // Cedar form: its filter reads this field
	case wire.FieldShadowDecision:
		return value(wire.FieldDecision, 0)
	}
	return fmt.Sprintf("%s-%d", f.Name, i)
}

// Filters are a filter on each field, by the field's name, that matches
// row i (and no other row of Body). policy_version has none: log queries
// do not filter on it.
func Filters(i int) map[string]decisionlog.Filter {
	s := func(f wire.Field) string { return value(f, i).(string) }
	uid := value(wire.FieldPeerUID, i).(uint32)
	return map[string]decisionlog.Filter{
		"principal": {Principal: s(wire.FieldPrincipal)}, "principal_id": {Principal: s(wire.FieldPrincipalID)},
		"action": {Action: s(wire.FieldAction)}, "action_id": {Action: s(wire.FieldActionID)},
		"resource": {Resource: s(wire.FieldResource)}, "resource_id": {Resource: s(wire.FieldResourceID)},
		"decision_id": {DecisionID: s(wire.FieldDecisionID)}, "decision": {Decision: s(wire.FieldDecision)},
		"session_id": {SessionID: s(wire.FieldSessionID)}, "task_id": {TaskID: s(wire.FieldTaskID)},
		"trace_id": {TraceID: s(wire.FieldTraceID)}, "approval_id": {ApprovalID: s(wire.FieldApprovalID)},
		"classification": {Classification: s(wire.FieldClassification)}, "on_behalf_of": {OnBehalfOf: s(wire.FieldOnBehalfOf)},
		"credential_id": {CredentialID: s(wire.FieldCredentialID)}, "tool_call_id": {ToolCallID: s(wire.FieldToolCallID)},
		"parent_decision_id": {ParentDecisionID: s(wire.FieldParentDecisionID)},
		"peer_uid":           {PeerUID: &uid},
	}
}

// ShadowDiff matches the rows of Body after the first.
var ShadowDiff = decisionlog.Filter{ShadowDiff: true}

// Missing names the fields of wire.RecordFields Filters has no filter for,
// besides policy_version.
func Missing() []string {
	fs := Filters(0)
	var out []string
	for _, f := range wire.RecordFields {
		if _, ok := fs[f.Name]; !ok && f != wire.FieldPolicyVersion && f != wire.FieldShadowDecision {
			out = append(out, f.Name)
		}
	}
	return out
}
