package pdp

import (
	"database/sql"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// The log table's columns (wire.IndexedColumns: decision_id, decision,
// parent_decision_id, approval_id, shadow_decision) are stored as each
// entry's decisionlog.Keys give them, so the log need not parse the body
// for them. Each must be what json_extract(body, path) gives: a string the
// record always writes is a value even when "", one it omits when empty
// (omitempty) is NULL then, and a path the record does not have is NULL.
// pdp/keys_test.go holds every kind of entry the engine writes to that;
// decisionlog's Verify fails a row that differs.

// written is a string field the record always writes.
func written(s string) sql.NullString { return sql.NullString{String: s, Valid: true} }

// omitEmpty is a string field the record writes only when it is not ""
// (json omitempty).
func omitEmpty(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// decisionColumns sets k's columns for a decision row holding rec.
func decisionColumns(k *decisionlog.Keys, rec *wire.DecisionRecord) {
	k.DecisionID, k.Decision = written(rec.DecisionID), written(string(rec.Decision))
	if r := rec.Request; r != nil {
		k.ParentDecisionID, k.ApprovalID = omitEmpty(r.ParentDecisionID), omitEmpty(r.Approval)
	}
	if s := rec.Shadow; s != nil {
		k.ShadowDecision = written(string(s.Decision))
	}
}

// outcomeKeys are the keys of an outcome row holding rec: its principal,
// and its decision id and decision (an outcome has no request or shadow).
func outcomeKeys(rec *wire.OutcomeRecord) *decisionlog.Keys {
	return &decisionlog.Keys{Principal: rec.Principal, DecisionID: written(rec.DecisionID), Decision: written(string(rec.Decision))}
}

// approvalKeys are the keys of an approval row holding rec: its principal
// and decision id (an approval has no decision, request or shadow).
func approvalKeys(rec *wire.ApprovalRecord) *decisionlog.Keys {
	return &decisionlog.Keys{Principal: rec.Principal, DecisionID: written(rec.DecisionID)}
}
