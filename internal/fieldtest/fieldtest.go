// Package fieldtest makes decision rows that differ in every stored field of
// the record (wire.RecordFields), and a decisionlog.Filter on each field,
// for the tests of the stores that query them: the SQLite log and the
// fleet's PostgreSQL.
package fieldtest

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

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

// Filter is the log query filter on field f for the value v (a string,
// or a uint32 for peer_uid), and false if log queries do not filter on f.
func Filter(f wire.Field, v any) (decisionlog.Filter, bool) {
	s, _ := v.(string)
	switch f {
	case wire.FieldPrincipal, wire.FieldPrincipalID:
		return decisionlog.Filter{Principal: s}, true
	case wire.FieldAction, wire.FieldActionID:
		return decisionlog.Filter{Action: s}, true
	case wire.FieldResource, wire.FieldResourceID:
		return decisionlog.Filter{Resource: s}, true
	case wire.FieldDecisionID:
		return decisionlog.Filter{DecisionID: s}, true
	case wire.FieldDecision:
		return decisionlog.Filter{Decision: s}, true
	case wire.FieldSessionID:
		return decisionlog.Filter{SessionID: s}, true
	case wire.FieldTaskID:
		return decisionlog.Filter{TaskID: s}, true
	case wire.FieldTraceID:
		return decisionlog.Filter{TraceID: s}, true
	case wire.FieldApprovalID:
		return decisionlog.Filter{ApprovalID: s}, true
	case wire.FieldClassification:
		return decisionlog.Filter{Classification: s}, true
	case wire.FieldOnBehalfOf:
		return decisionlog.Filter{OnBehalfOf: s}, true
	case wire.FieldCredentialID:
		return decisionlog.Filter{CredentialID: s}, true
	case wire.FieldToolCallID:
		return decisionlog.Filter{ToolCallID: s}, true
	case wire.FieldParentDecisionID:
		return decisionlog.Filter{ParentDecisionID: s}, true
	case wire.FieldPeerUID:
		u := v.(uint32)
		return decisionlog.Filter{PeerUID: &u}, true
	}
	return decisionlog.Filter{}, false
}

// Filters are a filter on each field, by the field's name, that matches
// row i (and no other row of Body). policy_version and shadow_decision
// have none: log queries filter on neither by value (ShadowDiff below).
func Filters(i int) map[string]decisionlog.Filter {
	out := map[string]decisionlog.Filter{}
	for _, f := range wire.RecordFields {
		if flt, ok := Filter(f, value(f, i)); ok {
			out[f.Name] = flt
		}
	}
	return out
}

// Missing names the fields of wire.RecordFields Filter has no filter for,
// besides policy_version and shadow_decision.
func Missing() []string {
	var out []string
	for _, f := range wire.RecordFields {
		if _, ok := Filter(f, value(f, 0)); !ok && f != wire.FieldPolicyVersion && f != wire.FieldShadowDecision {
			out = append(out, f.Name)
		}
	}
	return out
}

// Check asserts that a store holding Body(0) … Body(n-1) as seqs 1 … n
// finds each row by the filter on each of its fields and by nothing else,
// and the rows after the first by ShadowDiff. seqs runs a filter against
// the store and returns the seqs it finds, newest first.
func Check(t testing.TB, n int, seqs func(decisionlog.Filter) ([]int64, error)) {
	t.Helper()
	if m := Missing(); len(m) > 0 {
		t.Fatalf("fieldtest has no filter for %v", m)
	}
	for i := range n {
		for name, f := range Filters(i) {
			got, err := seqs(f)
			if err != nil {
				t.Fatalf("filter on %s: %v", name, err)
			}
			if !slices.Equal(got, []int64{int64(i + 1)}) {
				t.Errorf("filter on %s for row %d found seqs %v", name, i+1, got)
			}
		}
	}
	var want []int64
	for seq := n; seq > 1; seq-- {
		want = append(want, int64(seq))
	}
	got, err := seqs(decisionlog.Filter{ShadowDiff: true})
	if err != nil {
		t.Fatalf("shadow diff: %v", err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("shadow diff found seqs %v, want %v", got, want)
	}
}

// At is the value body holds at f's path, decoded by encoding/json (a
// number is a float64), nil if it holds none.
func At(body []byte, f wire.Field) (any, error) {
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, err
	}
	for _, m := range f.Members() {
		obj, _ := v.(map[string]any)
		v = obj[m]
	}
	return v, nil
}
