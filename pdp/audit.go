package pdp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp/mask"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// ConflictError is a request that contradicts what the log holds, such as
// approving a decision that was not step_up. It is answered with HTTP 409.
type ConflictError struct{ Msg string }

func (e *ConflictError) Error() string { return e.Msg }

// decisionRecord reads the logged decision id.
func (e *Engine) decisionRecord(ctx context.Context, id string) (*wire.DecisionRecord, error) {
	rec, _, err := e.decisionRow(ctx, id)
	return rec, err
}

// decisionRow is decisionRecord and the row's seq.
func (e *Engine) decisionRow(ctx context.Context, id string) (*wire.DecisionRecord, int64, error) {
	if e.opts.Log == nil {
		return nil, 0, errors.New("no log to read decisions from")
	}
	entry, err := e.opts.Log.Decision(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	var rec wire.DecisionRecord
	if err := json.Unmarshal(entry.Body, &rec); err != nil {
		return nil, 0, fmt.Errorf("decision %s: %w", id, err)
	}
	return &rec, entry.Seq, nil
}

// Outcome records what happened after decision id. An unknown id is
// decisionlog.ErrNotFound, and so is a decision another caller got: only
// the kernel-attested caller that asked (same uid and executable, from
// SO_PEERCRED) may report on it, and nobody else learns even that it
// exists, let alone how it went. An outcome other than skipped for a
// decision that was not allow is recorded and flagged.
func (e *Engine) Outcome(ctx context.Context, id string, req *wire.OutcomeRequest, peer *wire.Peer) (*wire.OutcomeRecord, int64, error) {
	switch req.Status {
	case wire.OutcomeSuccess, wire.OutcomeError, wire.OutcomeSkipped:
	default:
		return nil, 0, wire.BadRequest("/status", fmt.Errorf("%q: want success, error or skipped", req.Status))
	}
	if len(req.Detail) > 0 {
		if err := mask.CheckJSON("/detail", req.Detail); err != nil {
			return nil, 0, err
		}
	}
	dec, err := e.decisionRecord(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	if !sameCaller(dec.Peer, peer) {
		return nil, 0, fmt.Errorf("decision %s: %w", id, decisionlog.ErrNotFound)
	}
	rec := &wire.OutcomeRecord{
		DecisionID: id, Status: req.Status, Detail: req.Detail, Decision: dec.Decision,
		ActedAgainst: dec.Decision != wire.Allow && req.Status != wire.OutcomeSkipped,
		Principal:    dec.Principal, Action: dec.Action, Resource: dec.Resource, TraceID: traceID(dec), Peer: peer,
	}
	seq, err := e.append(ctx, decisionlog.KindOutcome, rec, outcomeKeys(rec))
	if err != nil {
		return nil, 0, err
	}
	return rec, seq, nil
}

// Approve records a human's approval or rejection of step_up decision id.
// Only a step_up decision can be approved, and only once.
func (e *Engine) Approve(ctx context.Context, id string, req *wire.ApprovalRequest, peer *wire.Peer) (*wire.ApprovalRecord, int64, error) {
	if strings.TrimSpace(req.Approver) == "" {
		return nil, 0, wire.BadRequest("/approver", errors.New("required: who approves"))
	}
	// The approval's row stores both strings: a raw token in either must
	// not reach the log any more than one in a request.
	if err := mask.CheckToken("/approver", req.Approver); err != nil {
		return nil, 0, err
	}
	if err := mask.CheckToken("/comment", req.Comment); err != nil {
		return nil, 0, err
	}
	dec, decSeq, err := e.decisionRow(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	if dec.Decision != wire.StepUp {
		return nil, 0, &ConflictError{fmt.Sprintf("decision %s was %s, not step_up: only a step_up decision can be approved", id, dec.Decision)}
	}
	rec := &wire.ApprovalRecord{
		DecisionID: id, Approver: req.Approver, Approved: req.Approved, Comment: req.Comment,
		ExpiresAt: e.opts.Now().Add(e.opts.ApprovalTTL).UTC(), SingleUse: !e.opts.ApprovalReusable,
		Principal: dec.Principal, Action: dec.Action, Resource: dec.Resource, ContextDigest: dec.ContextDigest,
		TraceID: traceID(dec), Peer: peer,
	}
	if err := e.approvals.claim(id); err != nil {
		return nil, 0, err
	}
	// The registry holds only approvals still usable; the log holds every
	// one ever given. A step_up decided once stays decided, however old.
	if prior, err := e.loggedApproval(ctx, id, decSeq); err != nil || prior != nil {
		if err != nil {
			e.approvals.unclaim(id)
			return nil, 0, err
		}
		e.approvals.add(prior)
		return nil, 0, e.approvals.claim(id)
	}
	seq, err := e.append(ctx, decisionlog.KindApproval, rec, approvalKeys(rec))
	if err != nil {
		e.approvals.unclaim(id)
		return nil, 0, err
	}
	e.approvals.add(rec)
	return rec, seq, nil
}

// traceID is the trace a decision's request named, "" if none.
func traceID(dec *wire.DecisionRecord) string {
	if dec.Request == nil {
		return ""
	}
	return dec.Request.TraceID
}

// sameCaller reports whether the peer reporting on a decision is the one
// that asked for it. Both are kernel-attested (SO_PEERCRED); a decision
// asked without a socket (in-process) can only be reported on that way.
func sameCaller(asked, reporting *wire.Peer) bool {
	if asked == nil || reporting == nil {
		return asked == nil && reporting == nil
	}
	return asked.UID == reporting.UID && asked.Exe == reporting.Exe
}

// loggedApproval is the approval or rejection the log holds for decision
// id, whose row is decSeq; nil if none.
func (e *Engine) loggedApproval(ctx context.Context, id string, decSeq int64) (*wire.ApprovalRecord, error) {
	// By the body, which the hash covers, from the decision's row on: a
	// decision_id column changed behind the triggers' back must not hide
	// an approval and let the step_up be decided again. Only approval
	// rows' bodies are read.
	es, err := e.opts.Log.Query(ctx, decisionlog.Filter{Kinds: []decisionlog.Kind{decisionlog.KindApproval}, DecisionID: id, FromSeq: decSeq + 1, ByBody: true, Limit: 1})
	if err != nil {
		return nil, fmt.Errorf("approval of %s: %w", id, err)
	}
	if len(es) == 0 {
		return nil, nil
	}
	var rec wire.ApprovalRecord
	if err := json.Unmarshal(es[0].Body, &rec); err != nil {
		return nil, fmt.Errorf("approval of %s: seq %d: %w", id, es[0].Seq, err)
	}
	return &rec, nil
}

// append records one entry and returns its seq.
func (e *Engine) append(ctx context.Context, kind decisionlog.Kind, body any, keys *decisionlog.Keys) (int64, error) {
	if e.opts.Recorder == nil {
		return 0, fmt.Errorf("%w: no recorder configured", ErrLogUnavailable)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return 0, fmt.Errorf("encode %s: %w", kind, err)
	}
	entry := &decisionlog.Entry{Kind: kind, Time: e.opts.Now(), Body: b, Keys: keys}
	if err := e.opts.Recorder.Append(ctx, entry); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrLogUnavailable, err)
	}
	return entry.Seq, nil
}

// approvalRegistry holds the approvals that can still be used, so that the
// single-use check and the use itself are one step even under concurrency.
// The log is the truth; the registry is rebuilt from it at start.
type approvalRegistry struct {
	mu   sync.Mutex
	byID map[string]*approvalState
}

type approvalState struct {
	rec      *wire.ApprovalRecord // nil while its approval is being written
	used     bool                 // consumed by an allowed decision
	reserved bool                 // a decision using it is being written
}

func newApprovalRegistry() *approvalRegistry {
	return &approvalRegistry{byID: map[string]*approvalState{}}
}

// claim reserves the right to approve decision id, so that two approvers
// racing cannot both record one.
func (r *approvalRegistry) claim(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st, ok := r.byID[id]; ok {
		if st.rec == nil {
			return &ConflictError{fmt.Sprintf("decision %s is being approved by another request", id)}
		}
		verb := "rejected"
		if st.rec.Approved {
			verb = "approved"
		}
		return &ConflictError{fmt.Sprintf("decision %s was already %s by %s", id, verb, st.rec.Approver)}
	}
	r.byID[id] = &approvalState{}
	return nil
}

func (r *approvalRegistry) unclaim(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st, ok := r.byID[id]; ok && st.rec == nil {
		delete(r.byID, id)
	}
}

func (r *approvalRegistry) add(rec *wire.ApprovalRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.byID[rec.DecisionID]
	if !ok {
		st = &approvalState{}
		r.byID[rec.DecisionID] = st
	}
	st.rec = rec
}

// reserve checks that approval id may be used for the prepared request now,
// and reserves it. problem says why not.
func (r *approvalRegistry) reserve(id string, p *prepared, now time.Time) (st *approvalState, problem string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.byID[id]
	switch {
	case !ok || st.rec == nil:
		return nil, fmt.Sprintf("approval %s does not exist", id)
	case !st.rec.Approved:
		return nil, fmt.Sprintf("approval %s was a rejection by %s", id, st.rec.Approver)
	case !now.Before(st.rec.ExpiresAt):
		return nil, fmt.Sprintf("approval %s expired at %s", id, st.rec.ExpiresAt.Format(time.RFC3339))
	case st.rec.SingleUse && (st.used || st.reserved):
		return nil, fmt.Sprintf("approval %s was already used", id)
	case st.rec.Principal != p.cedar.Principal.String() || st.rec.Action != p.cedar.Action.String() || st.rec.Resource != p.cedar.Resource.String():
		return nil, fmt.Sprintf("approval %s is for %s doing %s on %s, not this request", id, st.rec.Principal, st.rec.Action, st.rec.Resource)
	case st.rec.ContextDigest != p.digest:
		return nil, fmt.Sprintf("approval %s was given for another context", id)
	}
	st.reserved = true
	return st, ""
}

func (r *approvalRegistry) markUsed(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st, ok := r.byID[id]; ok {
		st.used = true
	}
}

// release ends a reservation; used says whether the approval was consumed.
func (r *approvalRegistry) release(st *approvalState, used bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st.reserved = false
	st.used = st.used || used
}

// LoadApprovals rebuilds the registry from the log: the approvals not yet
// expired, and whether a decision already used each. Call it at start,
// before serving.
func (e *Engine) LoadApprovals(ctx context.Context) error {
	if e.opts.Log == nil {
		return nil
	}
	since := e.opts.Now().Add(-e.opts.ApprovalTTL)
	var before int64
	var live []string
	for {
		entries, err := e.opts.Log.Query(ctx, decisionlog.Filter{Kinds: []decisionlog.Kind{decisionlog.KindApproval}, Since: since, BeforeSeq: before, Limit: 1000})
		if err != nil {
			return fmt.Errorf("load approvals: %w", err)
		}
		for _, entry := range entries {
			var rec wire.ApprovalRecord
			if err := json.Unmarshal(entry.Body, &rec); err != nil {
				return fmt.Errorf("load approvals: seq %d: %w", entry.Seq, err)
			}
			e.approvals.add(&rec)
			live = append(live, rec.DecisionID)
			before = entry.Seq
		}
		if len(entries) < 1000 {
			break
		}
	}
	if len(live) == 0 {
		return nil
	}
	// A use comes after its approval's row; the oldest is within the TTL,
	// so one pass reads at most the last TTL's rows. By the body
	// (UsedApprovals), not the columns the hash does not cover.
	used, err := e.opts.Log.UsedApprovals(ctx, before+1)
	if err != nil {
		return fmt.Errorf("load approvals: %w", err)
	}
	for _, id := range live {
		if used[id] {
			e.approvals.markUsed(id)
		}
	}
	return nil
}
