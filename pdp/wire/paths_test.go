package wire_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"regexp"
	"slices"
	"testing"

	"github.com/agentpdp/agentpdp/pdp/wire"
)

var (
	plainPath = regexp.MustCompile(`^\$(\.[a-z_]+)+$`)
	plainName = regexp.MustCompile(`^[a-z_]+$`)
)

// Every stored path reaches a field of the record by its json names, of a
// Go type that stores as the path's SQL type: a field renamed or retyped
// fails here, not in production queries that would read NULL.
func TestFields_InRecord(t *testing.T) {
	for _, f := range wire.RecordFields {
		if err := f.In(reflect.TypeFor[wire.DecisionRecord]()); err != nil {
			t.Errorf("DecisionRecord: %v", err)
		}
	}
	if err := wire.FieldOutcomeStatus.In(reflect.TypeFor[wire.OutcomeRecord]()); err != nil {
		t.Errorf("OutcomeRecord: %v", err)
	}
	names, paths := map[string]bool{}, map[string]bool{}
	for _, f := range append(wire.RecordFields, wire.FieldOutcomeStatus) {
		// Stores write paths into their SQL: member names only.
		if !plainPath.MatchString(f.Path) || !plainName.MatchString(f.Name) {
			t.Errorf("%s (%s): want a name of [a-z_] and a path of .[a-z_] members", f.Name, f.Path)
		}
		if names[f.Name] || paths[f.Path] {
			t.Errorf("%s (%s) is declared twice", f.Name, f.Path)
		}
		names[f.Name], paths[f.Path] = true, true
	}
}

// Outcome and approval rows share the log's columns: the ones their
// records hold at the same paths find them (by decision id, principal,
// peer). Losing one would hide those rows from that filter.
func TestFields_InOutcomeAndApproval(t *testing.T) {
	for _, c := range []struct {
		typ  reflect.Type
		want []string
	}{
		{reflect.TypeFor[wire.OutcomeRecord](), []string{"decision_id", "principal", "action", "resource", "decision", "peer_uid"}},
		{reflect.TypeFor[wire.ApprovalRecord](), []string{"decision_id", "principal", "action", "resource", "peer_uid"}},
	} {
		var got []string
		for _, f := range wire.RecordColumns {
			if f.In(c.typ) == nil {
				got = append(got, f.Name)
			}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s holds the columns %v, want %v", c.typ, got, c.want)
		}
	}
}

// In refuses what is not a field of the record, or not of its SQL type.
func TestField_InRefuses(t *testing.T) {
	rec := reflect.TypeFor[wire.DecisionRecord]()
	for _, f := range []wire.Field{
		{Name: "typo", Path: "$.request.sesion_id", Type: "TEXT"},
		{Name: "go name", Path: "$.request.SessionID", Type: "TEXT"},
		{Name: "retyped", Path: "$.peer.uid", Type: "TEXT"},
		{Name: "object", Path: "$.request.credential", Type: "TEXT"},
		{Name: "array", Path: "$.reasons.policy", Type: "TEXT"},
		{Name: "no root", Path: "decision_id", Type: "TEXT"},
		{Name: "other type", Path: "$.decision_id", Type: "BLOB"},
	} {
		if err := f.In(rec); err == nil {
			t.Errorf("%s (%s %s) accepted", f.Name, f.Path, f.Type)
		}
	}
}

// The record as MarshalRecord writes it holds each field's value at its
// path: the writer and the paths agree, whatever the writer becomes.
func TestFields_ReadBackFromMarshalRecord(t *testing.T) {
	rec := &wire.DecisionRecord{
		DecisionID: "d-1", Decision: wire.StepUp, Principal: `Agent::"a"`, Action: `Action::"read"`, Resource: `Doc::"r"`,
		Classification: "secret", PolicyVersion: "v-1",
		Request: &wire.Request{
			Principal: wire.EntityRef{Type: "Agent", ID: "a"}, Action: wire.EntityRef{Type: "Action", ID: "read"},
			Resource: wire.EntityRef{Type: "Doc", ID: "r"}, SessionID: "s-1", TaskID: "t-1", TraceID: "tr-1",
			ParentDecisionID: "d-0", ToolCallID: "call-1", OnBehalfOf: "alice", Credential: &wire.Credential{ID: "jti-1"},
			Approval: "d-9",
		},
		Shadow: &wire.ShadowResult{Decision: wire.Deny},
		Peer:   &wire.Peer{UID: 1001},
	}
	want := map[string]any{
		"decision_id": "d-1", "decision": "step_up", "principal": `Agent::"a"`, "action": `Action::"read"`, "resource": `Doc::"r"`,
		"classification": "secret", "policy_version": "v-1", "session_id": "s-1", "task_id": "t-1", "trace_id": "tr-1",
		"parent_decision_id": "d-0", "tool_call_id": "call-1", "on_behalf_of": "alice", "credential_id": "jti-1",
		"approval_id": "d-9", "shadow_decision": "deny", "peer_uid": json.Number("1001"),
		"principal_id": "a", "action_id": "read", "resource_id": "r",
	}
	if len(want) != len(wire.RecordFields) {
		t.Fatalf("this test sets %d fields, the table declares %d: give each a value", len(want), len(wire.RecordFields))
	}
	b, err := wire.MarshalRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	var body any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&body); err != nil {
		t.Fatal(err)
	}
	for _, f := range wire.RecordFields {
		v := body
		for _, m := range f.Members() {
			obj, _ := v.(map[string]any)
			v = obj[m]
		}
		if w, ok := want[f.Name]; !ok || v != w {
			t.Errorf("%s at %s: got %v, want %v", f.Name, f.Path, v, w)
		}
	}
}

// IndexedColumns are RecordColumns, in their order: the log keeps columns
// its migrations made, and makes no other.
func TestIndexedColumns_AreRecordColumns(t *testing.T) {
	var kept []wire.Field
	for _, f := range wire.RecordColumns {
		if slices.Contains(wire.IndexedColumns, f) {
			kept = append(kept, f)
		}
	}
	if !slices.Equal(kept, wire.IndexedColumns) {
		t.Errorf("wire.IndexedColumns %v: want a part of wire.RecordColumns in its order, got %v", wire.IndexedColumns, kept)
	}
}
