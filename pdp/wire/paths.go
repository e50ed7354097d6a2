package wire

import (
	"fmt"
	"reflect"
	"strings"
)

// The stored paths.
//
// The decision log stores each record as the JSON its json tags make, and
// reads some of its values back out of the stored body by JSON path: into
// the SQLite log table's columns, in filters and summaries, for the
// provenance index, and in the fleet collector's PostgreSQL queries. Those
// paths are declared here, beside the records, and nowhere else. A path
// names the record's fields by their json names, so a renamed field must
// come with a new path: wire's tests check that every path below reaches
// a field of the record, of the type its SQL type says; decisionlog's that
// its migrations 1-3 made exactly [RecordColumns] generated columns and
// that the migrated table keeps exactly [IndexedColumns], as stored
// columns.

// Field is one value of a stored record that the log reads back by path.
type Field struct {
	// Name is the column that holds the value where a store keeps one
	// (the SQLite log table's column, the fleet's column), and the
	// value's name otherwise.
	Name string
	// Path is where the value is in the stored body, in SQLite's JSON path
	// syntax: $.request.session_id. Object members only, no array indexes.
	Path string
	// Type is the SQL type of the value: TEXT or INTEGER.
	Type string
}

// The fields of [DecisionRecord] the log reads back. Outcome and approval
// records hold decision_id, principal, action, resource (and outcomes
// decision) at the same paths, and both their peer, so the same columns
// serve them.
var (
	FieldDecisionID       = Field{"decision_id", "$.decision_id", "TEXT"}
	FieldPrincipal        = Field{"principal", "$.principal", "TEXT"} // Cedar form, Agent::"a"
	FieldAction           = Field{"action", "$.action", "TEXT"}
	FieldResource         = Field{"resource", "$.resource", "TEXT"}
	FieldDecision         = Field{"decision", "$.decision", "TEXT"}
	FieldPolicyVersion    = Field{"policy_version", "$.policy_version", "TEXT"} // policy_load rows hold it too
	FieldSessionID        = Field{"session_id", "$.request.session_id", "TEXT"}
	FieldTaskID           = Field{"task_id", "$.request.task_id", "TEXT"}
	FieldTraceID          = Field{"trace_id", "$.request.trace_id", "TEXT"}
	FieldParentDecisionID = Field{"parent_decision_id", "$.request.parent_decision_id", "TEXT"}
	FieldClassification   = Field{"classification", "$.classification", "TEXT"}
	FieldOnBehalfOf       = Field{"on_behalf_of", "$.request.on_behalf_of", "TEXT"}
	FieldCredentialID     = Field{"credential_id", "$.request.credential.id", "TEXT"}
	FieldPeerUID          = Field{"peer_uid", "$.peer.uid", "INTEGER"}
	FieldToolCallID       = Field{"tool_call_id", "$.request.tool_call_id", "TEXT"}
	FieldApprovalID       = Field{"approval_id", "$.request.approval", "TEXT"}
	FieldShadowDecision   = Field{"shadow_decision", "$.shadow.decision", "TEXT"}

	// The bare ids of the request's principal, action and resource: a
	// filter by an id without its type reads them.
	FieldPrincipalID = Field{"principal_id", "$.request.principal.id", "TEXT"}
	FieldActionID    = Field{"action_id", "$.request.action.id", "TEXT"}
	FieldResourceID  = Field{"resource_id", "$.request.resource.id", "TEXT"}
)

// FieldOutcomeStatus is [OutcomeRecord]'s status, which log stats count.
var FieldOutcomeStatus = Field{"status", "$.status", "TEXT"}

// RecordColumns are the fields the SQLite log's migrations 1-3 made
// generated columns of its log table, in the order they added them; the
// shipped migrations keep this list true. Migration 8 dropped those not in
// [IndexedColumns], and the log reads them by path instead.
var RecordColumns = []Field{
	FieldDecisionID, FieldPrincipal, FieldAction, FieldResource, FieldDecision, FieldPolicyVersion,
	FieldSessionID, FieldTaskID, FieldTraceID, FieldParentDecisionID,
	FieldClassification, FieldOnBehalfOf, FieldCredentialID, FieldPeerUID, FieldToolCallID, FieldApprovalID,
	FieldShadowDecision,
}

// IndexedColumns are the [RecordColumns] the SQLite log's own indexes read
// (log_decision_id, log_parent, log_approval, and log_shadow_diff's
// shadow_decision != decision), in RecordColumns' order: the only columns
// over the body its log table keeps. Since migration 9 they are stored
// columns that the writer fills from each entry (decisionlog.Keys, which
// the engine fills from the record it encodes) rather than generated ones
// SQLite computes by parsing the body on every insert; decisionlog's
// Verify checks every row's columns against json_extract(body, path), as
// the hash covers the body alone. A field no index reads is read by path
// (json_extract(body, path)), which costs the same on a scan. A field
// added here needs a migration that adds its column and an index on it,
// and a Keys value (decisionlog's tests fail until both exist). The
// provenance index (decisionlog.IndexedFields) is another file and holds
// other fields.
var IndexedColumns = []Field{FieldDecisionID, FieldDecision, FieldParentDecisionID, FieldApprovalID, FieldShadowDecision}

// RecordFields are every field of [DecisionRecord] the log reads back:
// [RecordColumns], then the request's bare ids.
var RecordFields = append(RecordColumns[:len(RecordColumns):len(RecordColumns)], FieldPrincipalID, FieldActionID, FieldResourceID)

// Members are the path's object member names, in order: $.request.credential.id
// is request, credential, id.
func (f Field) Members() []string {
	return strings.Split(strings.TrimPrefix(f.Path, "$."), ".")
}

// In checks that f's path names a field of the struct type t by the json
// names of its fields, through pointers and embedded structs, and that the
// field's Go type stores as f's SQL type (TEXT a string, INTEGER an
// integer). The error names the member where it stops.
func (f Field) In(t reflect.Type) error {
	if !strings.HasPrefix(f.Path, "$.") {
		return fmt.Errorf("%s: path %q does not start with $.", f.Name, f.Path)
	}
	for _, m := range f.Members() {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return fmt.Errorf("%s: path %s: %q is a member of %s, which is not an object", f.Name, f.Path, m, t)
		}
		next, ok := jsonField(t, m)
		if !ok {
			return fmt.Errorf("%s: path %s: %s has no field with the json name %q", f.Name, f.Path, t, m)
		}
		t = next
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var ok bool
	switch f.Type {
	case "TEXT":
		ok = t.Kind() == reflect.String
	case "INTEGER":
		switch t.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			ok = true
		}
	default:
		return fmt.Errorf("%s: SQL type %q: want TEXT or INTEGER", f.Name, f.Type)
	}
	if !ok {
		return fmt.Errorf("%s: path %s is a %s, which does not store as %s", f.Name, f.Path, t, f.Type)
	}
	return nil
}

// jsonField finds the type of t's field whose JSON name is name: its json
// tag's name, or its Go name without one; embedded structs without a name
// (and ",inline" ones) contribute their own fields.
func jsonField(t reflect.Type, name string) (reflect.Type, bool) {
	for i := range t.NumField() {
		sf := t.Field(i)
		tag, opts, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if tag == "-" && opts == "" {
			continue
		}
		inline := strings.Contains(","+opts+",", ",inline,")
		if (sf.Anonymous && tag == "") || inline {
			et := sf.Type
			for et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				if ft, ok := jsonField(et, name); ok {
					return ft, true
				}
				continue
			}
		}
		if !sf.IsExported() {
			continue
		}
		if tag == "" {
			tag = sf.Name
		}
		if tag == name {
			return sf.Type, true
		}
	}
	return nil, false
}
