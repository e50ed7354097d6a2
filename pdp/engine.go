package pdp

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	"github.com/google/uuid"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp/identity"
	"github.com/agentpdp/agentpdp/pdp/mask"
	"github.com/agentpdp/agentpdp/pdp/policy"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// Recorder durably records log entries. Append must return only once the
// entries are committed; the engine answers nothing it has not recorded.
type Recorder interface {
	Append(ctx context.Context, entries ...*decisionlog.Entry) error
}

var _ Recorder = (*decisionlog.Log)(nil)

// ErrLogUnavailable wraps a failure to record a decision. The decision is
// not returned: nothing unlogged is ever answered.
var ErrLogUnavailable = errors.New("decision log unavailable")

// ErrNoPolicies is returned when no snapshot was ever loaded.
var ErrNoPolicies = errors.New("no policies loaded")

// PromptMode says what the log keeps of a request's prompt.
type PromptMode string

const (
	PromptHMAC  PromptMode = "hmac"  // HMAC-SHA256 under a key kept outside the database
	PromptStore PromptMode = "store" // the text itself
	PromptDrop  PromptMode = "drop"  // nothing
)

// LogReader reads the log back: the admin socket's queries, and the
// engine's lookups of the decisions that outcomes and approvals answer.
type LogReader interface {
	Query(ctx context.Context, f decisionlog.Filter) ([]*decisionlog.Entry, error)
	Decision(ctx context.Context, id string) (*decisionlog.Entry, error)
	Stats(ctx context.Context) (decisionlog.Stats, error)
	UsedApprovals(ctx context.Context, fromSeq int64) (map[string]bool, error)
}

var _ LogReader = (*decisionlog.Reader)(nil)

// Options configure an Engine.
type Options struct {
	Policies       string             // the policy directory
	Shadow         string             // a candidate policy directory evaluated beside it, recorded, never answered
	Load           policy.LoadOptions // extra schema or entities files
	OnError        wire.OnError       // default wire.OnErrorDeny
	CedarSemantics bool               // plain Cedar: no step-up, erroring policies skipped
	Prompt         PromptMode         // default PromptHMAC
	// Key is the secret for the HMACs that keep prompts, masked values and
	// context digests out of the log in the clear. It lives outside the
	// database; required (16 bytes or more) when decisions are recorded.
	Key        []byte
	Mask       []string    // JSON pointers into the request to mask in the log
	MaskAction mask.Action // default mask.HMAC

	ApprovalTTL      time.Duration // how long an approval can be used; default 15m
	ApprovalReusable bool          // let an approval serve more than one request

	// EntityProviders add entities to every decided request (not to check's
	// evaluations). A provider that fails or misses its deadline makes the
	// decision deny, with the error in the row.
	EntityProviders []ProviderConfig

	// Trust is the trust boundary: which inline entities a request may
	// send, tokens, callers rules and unknown principals (trust.go).
	Trust TrustOptions

	Recorder Recorder  // required by Decide and by Reload to log policy loads
	Log      LogReader // required by Outcome, Approve and LoadApprovals
	Now      func() time.Time
}

// Engine decides requests against the current policy snapshot, records every
// decision before returning it, and swaps snapshots atomically on reload.
type Engine struct {
	opts      Options
	snap      atomic.Pointer[policy.Snapshot]
	shadow    atomic.Pointer[policy.Snapshot]
	masker    *mask.Masker
	approvals *approvalRegistry
	macs      sync.Pool // of *macState, HMAC-SHA256 under opts.Key: hmac.New costs more than the MAC of a context

	sharedTracker *identity.SharedTracker // nil when shared identities are not flagged
	shared        sharedCount
	callerRecords callerCache // context.caller of the last caller, reused while it calls
	inline        *inlineMemo // what inline entities were made into (inline.go)

	reloadMu sync.Mutex // serialises reloads; decisions never take it

	statusMu sync.Mutex
	status   ReloadStatus
}

// ReloadStatus is what GET /v1/status reports of the policies.
type ReloadStatus struct {
	PolicyVersion     string     `json:"policy_version"`
	Files             []string   `json:"files"`
	Policies          int        `json:"policies"`
	Entities          int        `json:"entities"`
	Schema            bool       `json:"schema"`
	LoadedAt          time.Time  `json:"loaded_at"`
	Reloads           int64      `json:"reloads"`
	ReloadFailures    int64      `json:"reload_failures"`
	LastReloadError   string     `json:"last_reload_error,omitempty"`
	LastReloadErrorAt *time.Time `json:"last_reload_error_at,omitempty"`
	// LastReloadOK is whether the last load was served (or found the
	// version already serving); LastReloadOKAt is when a load last was.
	// After failures, a good load sets it again and clears the error: the
	// set is serving again.
	LastReloadOK   bool       `json:"last_reload_ok"`
	LastReloadOKAt *time.Time `json:"last_reload_ok_at,omitempty"`
	ShadowVersion  string     `json:"shadow_policy_version,omitempty"`
	ShadowError    string     `json:"shadow_error,omitempty"`
}

// NewEngine checks opts. Call Reload to load the first snapshot.
func NewEngine(opts Options) (*Engine, error) {
	if opts.OnError == "" {
		opts.OnError = wire.OnErrorDeny
	}
	if opts.OnError != wire.OnErrorDeny && opts.OnError != wire.OnErrorSkip {
		return nil, fmt.Errorf("on_error %q: want deny or skip", opts.OnError)
	}
	if opts.Prompt == "" {
		opts.Prompt = PromptHMAC
	}
	switch opts.Prompt {
	case PromptHMAC, PromptStore, PromptDrop:
	default:
		return nil, fmt.Errorf("prompt %q: want hmac, store or drop", opts.Prompt)
	}
	if opts.Recorder != nil && len(opts.Key) < 16 {
		return nil, errors.New("a key of at least 16 bytes is needed for the HMACs in recorded decisions")
	}
	if opts.ApprovalTTL <= 0 {
		opts.ApprovalTTL = 15 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := opts.Trust.check(); err != nil {
		return nil, err
	}
	e := &Engine{opts: opts, approvals: newApprovalRegistry(), inline: newInlineMemo()}
	if opts.Trust.SharedWindow > 0 {
		e.sharedTracker = identity.NewSharedTracker(opts.Trust.SharedWindow)
	}
	m, err := mask.New(opts.Mask, opts.MaskAction, opts.Key)
	if err != nil {
		return nil, err
	}
	if len(opts.Mask) > 0 {
		e.masker = m
	}
	return e, nil
}

// Snapshot returns the snapshot decisions are being made with, or nil.
func (e *Engine) Snapshot() *policy.Snapshot { return e.snap.Load() }

// Status reports the current policies and the last reload failure.
func (e *Engine) Status() ReloadStatus {
	e.statusMu.Lock()
	defer e.statusMu.Unlock()
	return e.status
}

// Stage loads and validates the policy directory without serving it. The
// commit it returns records a policy-load row for the snapshot, then swaps
// it in (if its version differs); a failure of either keeps the current
// snapshot. A load error is returned as is: pass it to LoadFailed once it
// stands (the reload component first checks that the tree was not being
// changed while it was read). Reloads go through pdp/reload; Stage is its
// step, not a second way in.
func (e *Engine) Stage() (commit func(ctx context.Context, trigger string) (bool, error), err error) {
	snap, err := policy.LoadDir(e.opts.Policies, e.opts.Load)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, trigger string) (bool, error) { return e.Use(ctx, snap, trigger) }, nil
}

// LoadFailed records a refused load in the status: GET /v1/status and the
// reload-failure metric show it. The serving snapshot stays.
func (e *Engine) LoadFailed(err error) { e.noteReload(err) }

// ShadowSnapshot returns the shadow snapshot, or nil.
func (e *Engine) ShadowSnapshot() *policy.Snapshot { return e.shadow.Load() }

// StageShadow loads the shadow directory as Stage loads the live one: a
// failure keeps the current shadow, a change is logged before it is used.
func (e *Engine) StageShadow() (commit func(ctx context.Context, trigger string) (bool, error), err error) {
	if e.opts.Shadow == "" {
		return nil, errors.New("no shadow policies configured")
	}
	snap, err := policy.LoadDir(e.opts.Shadow, e.opts.Load)
	if err != nil {
		return nil, fmt.Errorf("shadow policies: %w", err)
	}
	return func(ctx context.Context, trigger string) (bool, error) {
		e.reloadMu.Lock()
		defer e.reloadMu.Unlock()
		changed, err := e.publish(ctx, &e.shadow, snap, trigger, true)
		e.statusMu.Lock()
		defer e.statusMu.Unlock()
		if err != nil {
			e.status.ShadowError = err.Error()
			return false, err
		}
		e.status.ShadowError = ""
		e.status.ShadowVersion = e.shadow.Load().Version
		return changed, nil
	}, nil
}

// ShadowLoadFailed records a refused shadow load in the status.
func (e *Engine) ShadowLoadFailed(err error) {
	e.statusMu.Lock()
	defer e.statusMu.Unlock()
	e.status.ShadowError = err.Error()
}

// Use serves a snapshot loaded by the caller (with LoadFS, say), exactly as
// Reload would serve one it loaded itself.
func (e *Engine) Use(ctx context.Context, snap *policy.Snapshot, trigger string) (bool, error) {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	return e.install(ctx, snap, trigger)
}

// install records snap's load, then publishes it. Callers hold reloadMu.
func (e *Engine) install(ctx context.Context, snap *policy.Snapshot, trigger string) (bool, error) {
	changed, err := e.swap(ctx, snap, trigger)
	e.noteReload(err)
	return changed, err
}

func (e *Engine) noteReload(err error) {
	now := e.opts.Now()
	e.statusMu.Lock()
	defer e.statusMu.Unlock()
	e.status.Reloads++
	if err != nil {
		e.status.ReloadFailures++
		e.status.LastReloadError = err.Error()
		e.status.LastReloadErrorAt = &now
		e.status.LastReloadOK = false
		return
	}
	e.status.LastReloadError, e.status.LastReloadErrorAt = "", nil
	e.status.LastReloadOK, e.status.LastReloadOKAt = true, &now
	snap := e.snap.Load()
	e.status.PolicyVersion = snap.Version
	e.status.LoadedAt = snap.LoadedAt
	e.status.Policies = len(snap.Policies)
	e.status.Entities = snap.Entities()
	e.status.Schema = snap.Schema
	e.status.Files = make([]string, len(snap.Files))
	for i, f := range snap.Files {
		e.status.Files[i] = f.Path
	}
}

func (e *Engine) swap(ctx context.Context, snap *policy.Snapshot, trigger string) (bool, error) {
	return e.publish(ctx, &e.snap, snap, trigger, false)
}

// publish records snap's load and then stores it in slot: the live or the
// shadow snapshot. Callers hold reloadMu.
func (e *Engine) publish(ctx context.Context, slot *atomic.Pointer[policy.Snapshot], snap *policy.Snapshot, trigger string, shadow bool) (bool, error) {
	cur := slot.Load()
	if cur != nil && cur.Version == snap.Version {
		return false, nil
	}
	if e.opts.Recorder != nil {
		// The load is logged before any decision can be made with it, so
		// every logged decision's policy_version has its text in the log.
		rec := PolicyLoadRecord{
			PolicyVersion: snap.Version,
			Trigger:       trigger,
			Shadow:        shadow,
			Root:          snap.Root,
			Files:         snap.Files,
			Policies:      snap.Policies,
			Schema:        snap.Schema,
			Entities:      snap.Entities(),
		}
		if cur != nil {
			rec.PreviousVersion = cur.Version
		}
		body, err := json.Marshal(rec)
		if err != nil {
			return false, fmt.Errorf("record policy load: %w", err)
		}
		entry := &decisionlog.Entry{Kind: decisionlog.KindPolicyLoad, Time: snap.LoadedAt, Body: body, Keys: &decisionlog.Keys{}}
		if err := e.opts.Recorder.Append(ctx, entry); err != nil {
			return false, fmt.Errorf("record policy load: %w: %w", ErrLogUnavailable, err)
		}
	}
	slot.Store(snap)
	return true, nil
}

// PolicyLoadRecord is the body of a policy_load log entry.
type PolicyLoadRecord struct {
	PolicyVersion   string              `json:"policy_version"`
	PreviousVersion string              `json:"previous_version,omitempty"`
	Trigger         string              `json:"trigger"`
	Shadow          bool                `json:"shadow,omitempty"` // a shadow (candidate) load, never answered with
	Root            string              `json:"root"`             // the policy directory, as Files' paths begin
	Files           []policy.PolicyFile `json:"files"`
	Policies        []*policy.Policy    `json:"policies"`
	Schema          bool                `json:"schema"`
	Entities        int                 `json:"entities"`
}

// prepared is a request checked and converted for Cedar.
type prepared struct {
	cedar cedar.Request // its Context is made by context: read it through request
	// ctx is the context's members until context makes cedar.Context
	// from them (ctxMade): admit adds context.identity and context.caller
	// first, so that a request makes one record, not two (types.NewRecord
	// sorts, hashes and copies). It is p's own.
	ctx      types.RecordMap
	ctxMade  bool
	entities types.EntityMap // from the request; layered over the snapshot's
	logged   *wire.Request
	digest   string          // of the normalised context
	masked   []string        // pointers masked in logged
	redact   *mask.Redaction // the strings masked in logged, for messages that quote them

	provided        []wire.Entity // from entity providers, normalised
	providerFailure string        // why a provider failed; the decision is deny
	refusal         *wire.Reason  // set by Refuse: the decision is deny, Cedar is not asked

	trust trust // what the trust boundary established (trust.go)

	// cedar.Principal and cedar.Resource as strings, made once: see
	// principalString.
	principal, resource string
}

// context is the request's context as Cedar sees it: its members and
// those admit added, made into a record on first use.
func (p *prepared) context() types.Record {
	if !p.ctxMade {
		if p.ctx != nil {
			p.cedar.Context = types.NewRecord(p.ctx)
		}
		p.ctx, p.ctxMade = nil, true
	}
	return p.cedar.Context
}

// request is the request as Cedar evaluates it.
func (p *prepared) request() cedar.Request {
	p.context()
	return p.cedar
}

// addContext adds a member the daemon sets to the context, before its
// record is made.
func (p *prepared) addContext(k types.String, v types.Value) {
	if p.ctxMade {
		// Not the engine's order (admit, then evaluate), but still right.
		p.ctx, p.ctxMade = p.cedar.Context.Map(), false
	}
	if p.ctx == nil {
		p.ctx = make(types.RecordMap, len(reservedContext))
	}
	p.ctx[k] = v
}

// principalString is p.cedar.Principal.String(), made once per request: the
// row's key, its evidence and the shared-identity tracker all need it.
func (p *prepared) principalString() string {
	if p.principal == "" {
		p.principal = uidString(p.cedar.Principal)
	}
	return p.principal
}

// resourceString is p.cedar.Resource.String(), made once per request.
func (p *prepared) resourceString() string {
	if p.resource == "" {
		p.resource = uidString(p.cedar.Resource)
	}
	return p.resource
}

// uidString is uid.String(), the principal's and the resource's made once.
func (p *prepared) uidString(uid types.EntityUID) string {
	switch uid {
	case p.cedar.Principal:
		return p.principalString()
	case p.cedar.Resource:
		return p.resourceString()
	}
	return uidString(uid)
}

// layered looks entities up in the request first, then in the snapshot, so
// that request entities win without copying the static map per request.
type layered struct{ over, under types.EntityMap }

func (l layered) Get(uid types.EntityUID) (types.Entity, bool) {
	if e, ok := l.over[uid]; ok {
		return e, true
	}
	e, ok := l.under[uid]
	return e, ok
}

// prepare checks and converts a request. evidence says admit will add
// context.identity and context.caller (addsEvidence): the context's record
// is then made after, once. It is a hint: either way the context is right.
func (e *Engine) prepare(req *wire.Request, evidence bool) (*prepared, error) {
	p, err := e.prepareWith(req, mask.Token, e.inline, evidence)
	if err != nil && e.masker != nil && errors.Is(err, mask.ErrSecret) {
		// A secret at a place the operator masks is masked, not refused:
		// read the request again with only the raw-token rule, mask the
		// logged copy, and refuse a secret only where the log would hold it.
		// Requests without a secret, nearly all, never come here.
		if p, err = e.prepareWith(req, mask.RawToken, nil, evidence); err == nil {
			err = mask.CheckLogged(p.logged)
		}
	}
	return p, err
}

// prepareWith is prepare with check, the rule every string is held to;
// memo, if not nil, remembers inline entities read under check.
func (e *Engine) prepareWith(req *wire.Request, check func(string) error, memo *inlineMemo, evidence bool) (*prepared, error) {
	// A raw token must never reach the log, whatever field it is sent in.
	if err := mask.CheckRequestWith("", req, check); err != nil {
		return nil, err
	}
	p := &prepared{cedar: cedar.Request{
		Principal: req.Principal.UID(),
		Action:    req.Action.UID(),
		Resource:  req.Resource.UID(),
	}}
	var ctxJSON json.RawMessage
	var err error
	if evidence {
		// The context's members, with room for the two admit adds; the
		// record is made once, when first used (context).
		p.ctx, ctxJSON, err = wire.NormalizeRecordMap(req.Context, "/context", check, len(reservedContext))
	} else {
		p.cedar.Context, ctxJSON, err = wire.NormalizeRecord(req.Context, "/context", check)
		p.ctxMade = true
	}
	if err != nil {
		return nil, err
	}
	for _, k := range reservedContext {
		_, inMap := p.ctx[types.String(k)]
		if _, inRecord := p.cedar.Context.Get(types.String(k)); inMap || inRecord {
			return nil, wire.BadRequest("context."+k, fmt.Errorf("context.%s is set by the daemon from its evidence; a request cannot set it", k))
		}
	}
	logged := *req
	logged.Context = ctxJSON
	logged.Token = "" // verified by admit; only its thumbprint is recorded
	p.logged = &logged
	if len(req.Entities) > 0 {
		p.entities = make(types.EntityMap, len(req.Entities))
		logged.Entities = make([]wire.Entity, len(req.Entities))
		for i, in := range req.Entities {
			uid := in.UID.UID()
			if _, dup := p.entities[uid]; dup {
				return nil, wire.BadRequest("/entities/"+strconv.Itoa(i)+"/uid", fmt.Errorf("entity %s appears twice", uid))
			}
			ptr := inlinePointers(i)
			ent, out, err := normalizeEntity(in, ptr.attrs, ptr.tags, check, memo)
			if err != nil {
				return nil, err
			}
			p.entities[uid] = ent
			logged.Entities[i] = out
		}
	}
	p.digest = e.hmac(ctxJSON)
	switch e.opts.Prompt {
	case PromptDrop:
		logged.Prompt = ""
	case PromptHMAC:
		if logged.Prompt != "" {
			logged.Prompt = e.hmac([]byte(logged.Prompt))
		}
	}
	if e.masker != nil {
		if logged.Credential != nil {
			c := *logged.Credential // masking must not reach the caller's request
			logged.Credential = &c
		}
		if p.masked, p.redact, err = e.masker.Apply(&logged); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// keys are what the decision's row holds for the provenance index: the
// request as logged (masked), where DecisionRecord puts it.
func (p *prepared) keys() *decisionlog.Keys {
	k := &decisionlog.Keys{
		Principal:  p.principalString(),
		SessionID:  p.logged.SessionID,
		TaskID:     p.logged.TaskID,
		TraceID:    p.logged.TraceID,
		OnBehalfOf: p.logged.OnBehalfOf,
		ToolCallID: p.logged.ToolCallID,
	}
	if c := p.logged.Credential; c != nil {
		k.CredentialID = c.ID
	}
	return k
}

// hmac is HMAC-SHA256 under the engine's key, as logged: hmac-sha256:<hex>.
// Without a key (check, which logs nothing) it is a plain SHA-256.
func (e *Engine) hmac(b []byte) string {
	if len(e.opts.Key) == 0 {
		sum := sha256.Sum256(b)
		return "sha256:" + hex.EncodeToString(sum[:])
	}
	m, _ := e.macs.Get().(*macState)
	if m == nil {
		m = &macState{h: hmac.New(sha256.New, e.opts.Key)}
	}
	m.h.Reset()
	m.h.Write(b)
	// One allocation, the string: the sum (in the pooled state, as it
	// would escape through hash.Hash), the prefix and the hex in place.
	const prefix = "hmac-sha256:"
	var out [len(prefix) + 2*sha256.Size]byte
	copy(out[:], prefix)
	hex.Encode(out[len(prefix):], m.h.Sum(m.sum[:0]))
	e.macs.Put(m)
	return string(out[:])
}

// macState is an HMAC-SHA256 under the engine's key and room for its sum,
// pooled in Engine.macs.
type macState struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

// guardExpired is the credential check that runs before anything else.
func guardExpired(req *wire.Request, now time.Time) *evaluation {
	if c := req.Credential; c != nil && c.ExpiresAt != nil && !c.ExpiresAt.After(now) {
		return &evaluation{decision: wire.Deny, reasons: []wire.Reason{{
			Policy: ReasonCredentialExpired, Effect: "forbid", Builtin: true,
			Detail: strings.TrimSpace(fmt.Sprintf("credential %s expired at %s", c.ID, c.ExpiresAt.UTC().Format(time.RFC3339))),
		}}}
	}
	return nil
}

func approvalInvalid(problem string) evaluation {
	return evaluation{decision: wire.Deny, reasons: []wire.Reason{{Policy: ReasonApprovalInvalid, Effect: "forbid", Builtin: true, Detail: problem}}}
}

// evaluate runs the guards, then Cedar. approval is the request's valid,
// reserved approval, if it named one; a step_up it answers becomes allow.
func (e *Engine) evaluate(snap *policy.Snapshot, p *prepared, now time.Time, approval *wire.ApprovalRecord) evaluation {
	if p.refusal != nil {
		return evaluation{decision: wire.Deny, reasons: []wire.Reason{*p.refusal}}
	}
	if g := p.trust.guard; g != nil {
		return *g
	}
	if ev := guardExpired(p.logged, now); ev != nil {
		return *ev
	}
	if p.providerFailure != "" {
		return evaluation{decision: wire.Deny,
			reasons: []wire.Reason{{Policy: ReasonProviderFailed, Effect: "forbid", Builtin: true, Detail: p.providerFailure}},
			errors:  []wire.EvalError{{Policy: ReasonProviderFailed, Message: p.providerFailure}}}
	}
	if g := p.trust.unknown; g != nil {
		return *g
	}
	var ents types.EntityGetter = snap.EntityMap()
	if len(p.entities) > 0 {
		ents = layered{over: p.entities, under: snap.EntityMap()}
	}
	ev := evaluate(snap, p.request(), ents, e.opts.OnError, e.opts.CedarSemantics)
	if approval != nil && ev.decision == wire.StepUp {
		ev.decision = wire.Allow
		ev.approval = &wire.ApprovalUse{ID: approval.DecisionID, Approver: approval.Approver}
		ev.reasons = append(ev.reasons, wire.Reason{Policy: "approval", Effect: "permit", Builtin: true,
			Detail: fmt.Sprintf("step-up approved by %s (approval %s)", approval.Approver, approval.DecisionID)})
	}
	return ev
}

// classification is the sensitivity of the data a request touches: the
// context's classification if the caller states one, else the resource
// entity's classification attribute. It is read from the request as logged,
// so a masked classification is stored as its mask.
func classification(p *prepared, snap *policy.Snapshot) string {
	if len(p.masked) > 0 {
		return maskedClassification(p, snap)
	}
	if v, ok := p.context().Get("classification"); ok {
		if s, ok := v.(types.String); ok {
			return string(s)
		}
	}
	ent, ok := layered{over: p.entities, under: snap.EntityMap()}.Get(p.cedar.Resource)
	if !ok {
		return ""
	}
	if v, ok := ent.Attributes.Get("classification"); ok {
		if s, ok := v.(types.String); ok {
			return string(s)
		}
	}
	return ""
}

// maskedClassification is classification read from the masked copy of the
// request (context, then inline entities, then the snapshot's entities).
func maskedClassification(p *prepared, snap *policy.Snapshot) string {
	if s, ok := classificationIn(p.logged.Context); ok {
		return s
	}
	for _, ent := range p.logged.Entities {
		if ent.UID.UID() == p.cedar.Resource {
			s, _ := classificationIn(ent.Attrs)
			return s // request entities win over the snapshot's, as in layered
		}
	}
	if ent, ok := snap.EntityMap()[p.cedar.Resource]; ok {
		if v, ok := ent.Attributes.Get("classification"); ok {
			if s, ok := v.(types.String); ok {
				return string(s)
			}
		}
	}
	return ""
}

// classificationIn is the string at key "classification" (case-sensitive)
// of a normalised JSON object, if there is one.
func classificationIn(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 {
		return "", false
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return "", false
	}
	var s string
	if v, ok := obj["classification"]; !ok || json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

// redacted returns ev's reasons and errors with every masked value they
// quote replaced by its mask (a Cedar error may quote a context value:
// "error parsing IP address <the value>"), as new slices.
func redacted(red *mask.Redaction, reasons []wire.Reason, errs []wire.EvalError) ([]wire.Reason, []wire.EvalError) {
	if red == nil {
		return reasons, errs
	}
	rs := slices.Clone(reasons)
	for i := range rs {
		rs[i].Detail = red.Redact(rs[i].Detail)
	}
	es := slices.Clone(errs)
	for i := range es {
		es[i].Message = red.Redact(es[i].Message)
	}
	return rs, es
}

// Evaluate decides a request without recording it, for the check command and
// for tests of policies. Bad input is a *RequestError.
func (e *Engine) Evaluate(req *wire.Request) (*wire.Decision, error) {
	return e.evaluateWith(req, nil, nil)
}

func (e *Engine) evaluateWith(req *wire.Request, peer *wire.Peer, given *identity.Identity) (*wire.Decision, error) {
	snap := e.snap.Load()
	if snap == nil {
		return nil, ErrNoPolicies
	}
	p, err := e.prepare(req, !e.opts.CedarSemantics && e.addsEvidence(snap))
	if err != nil {
		return nil, err
	}
	now := e.opts.Now()
	if !e.opts.CedarSemantics {
		// No providers here: check and policy tests see the boundary the
		// daemon applies to inline entities, tokens and unknown principals.
		if err := e.admit(context.Background(), snap, req, p, peer, given, now); err != nil {
			return nil, err
		}
	}
	ev := e.evaluate(snap, p, now, nil)
	if req.Approval != "" {
		// Approvals live in the daemon's log; without it none is valid.
		ev = approvalInvalid(fmt.Sprintf("approval %s cannot be checked without the decision log", req.Approval))
	}
	return &wire.Decision{Decision: ev.decision, Reasons: nonNil(ev.reasons), Errors: nonNil(ev.errors), PolicyVersion: snap.Version}, nil
}

// Decide decides one request and records it; see DecideBatch.
func (e *Engine) Decide(ctx context.Context, req *wire.Request, peer *wire.Peer) (*wire.Decision, error) {
	ds, err := e.DecideBatch(ctx, []*wire.Request{req}, peer)
	if err != nil {
		return nil, err
	}
	return ds[0], nil
}

// DecideBatch decides requests on one snapshot and records them in one
// commit. It returns only after the records are durable. Bad input in any
// request is a *RequestError and nothing is recorded; a failure to record
// wraps ErrLogUnavailable and no decision is returned.
func (e *Engine) DecideBatch(ctx context.Context, reqs []*wire.Request, peer *wire.Peer) ([]*wire.Decision, error) {
	return e.decideBatch(ctx, reqs, peer, nil)
}

// decideBatch is DecideBatch; a refusal makes every decision deny with it.
func (e *Engine) decideBatch(ctx context.Context, reqs []*wire.Request, peer *wire.Peer, refusal *wire.Reason) ([]*wire.Decision, error) {
	if e.opts.Recorder == nil {
		return nil, fmt.Errorf("%w: no recorder configured", ErrLogUnavailable)
	}
	snap := e.snap.Load() // one snapshot for the whole batch, whatever reloads meanwhile
	if snap == nil {
		return nil, ErrNoPolicies
	}
	shadow := e.shadow.Load()
	// A group-committing log may hold a commit back for these entries
	// while they are prepared, rather than fsync without them.
	arrived := func() {}
	if ex, ok := e.opts.Recorder.(interface{ Expect() func() }); ok {
		arrived = ex.Expect()
	}
	defer arrived()
	ps := make([]*prepared, len(reqs))
	for i, req := range reqs {
		p, err := e.prepare(req, refusal == nil && !e.opts.CedarSemantics && e.addsEvidence(snap))
		if err != nil {
			if len(reqs) > 1 {
				var re *wire.RequestError
				if errors.As(err, &re) {
					re.Field = wire.JoinField(fmt.Sprintf("/requests/%d", i), re.Field)
				}
			}
			return nil, err
		}
		if p.refusal = refusal; refusal == nil {
			e.provide(ctx, req, p)
			if !e.opts.CedarSemantics {
				if err := e.admit(ctx, snap, req, p, peer, nil, e.opts.Now()); err != nil {
					if len(reqs) > 1 {
						var re *wire.RequestError
						if errors.As(err, &re) {
							re.Field = wire.JoinField(fmt.Sprintf("requests[%d]", i), re.Field)
						}
					}
					return nil, err
				}
			}
		}
		ps[i] = p
	}
	decisions := make([]*wire.Decision, len(reqs))
	entries := make([]*decisionlog.Entry, len(reqs))
	// Approvals reserved for this batch are consumed if it is recorded and
	// released if it is not, so a single-use approval allows exactly once.
	type use struct {
		st       *approvalState
		consumes bool // the decision it was reserved for was allowed by it
	}
	var uses []use
	recorded := false
	defer func() {
		for _, u := range uses {
			e.approvals.release(u.st, recorded && u.consumes)
		}
	}()
	for i, p := range ps {
		start := time.Now()
		now := e.opts.Now()
		var ev evaluation
		var approval *wire.ApprovalRecord
		refused := false // the request named an approval that is not valid
		if id := p.logged.Approval; id != "" && p.refusal == nil {
			st, problem := e.approvals.reserve(id, p, now)
			if st == nil {
				ev, refused = approvalInvalid(problem), true
			} else {
				uses = append(uses, use{st: st})
				approval = st.rec
			}
		}
		if ev.decision == "" {
			ev = e.evaluate(snap, p, now, approval)
			if approval != nil {
				uses[len(uses)-1].consumes = ev.approval != nil
			}
		}
		elapsed := time.Since(start)
		var shadowResult *wire.ShadowResult
		if shadow != nil {
			// The same request, guards and approval, on the candidate: recorded
			// so that log query --shadow-diff shows where they part.
			sev := ev
			if !refused {
				sev = e.evaluate(shadow, p, now, approval)
			}
			sev.reasons, sev.errors = redacted(p.redact, sev.reasons, sev.errors)
			shadowResult = &wire.ShadowResult{Decision: sev.decision, Reasons: nonNil(sev.reasons), Errors: sev.errors, PolicyVersion: shadow.Version}
		}
		id, err := uuid.NewV7()
		if err != nil {
			return nil, fmt.Errorf("decision id: %w", err)
		}
		ev.reasons, ev.errors = redacted(p.redact, ev.reasons, ev.errors)
		d := &wire.Decision{
			DecisionID:    id.String(),
			Decision:      ev.decision,
			Reasons:       nonNil(ev.reasons),
			Errors:        nonNil(ev.errors),
			PolicyVersion: snap.Version,
		}
		keys := p.keys()
		rec := &wire.DecisionRecord{
			DecisionID:     d.DecisionID,
			Decision:       d.Decision,
			Principal:      keys.Principal,
			Action:         uidString(p.cedar.Action),
			Resource:       p.resourceString(),
			Classification: classification(p, snap),
			Reasons:        d.Reasons,
			Errors:         d.Errors,
			PolicyVersion:  d.PolicyVersion,
			OnError:        e.opts.OnError,
			Approval:       ev.approval,
			ContextDigest:  p.digest,
			Request:        p.logged,
			Masked:         p.masked,
			Provided:       p.provided,
			LogOnly:        ev.logOnly,
			Shadow:         shadowResult,
			Peer:           peer,
			Evidence:       p.evidence(),
			SharedIdentity: p.trust.shared,
			EvalNanos:      elapsed.Nanoseconds(),
		}
		body, err := wire.MarshalRecord(rec)
		if err != nil {
			return nil, fmt.Errorf("encode decision record: %w", err)
		}
		decisionColumns(keys, rec)
		decisions[i] = d
		entries[i] = &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: now, Body: body, Keys: keys}
	}
	arrived()
	if err := e.opts.Recorder.Append(ctx, entries...); err != nil {
		if errors.Is(err, decisionlog.ErrRowRefused) {
			// This request's row, not the log, is at fault: a 400, and the
			// requests that shared its commit were written and answered.
			return nil, wire.BadRequest("", fmt.Errorf("the decision log cannot store this request: %w", err))
		}
		return nil, fmt.Errorf("%w: %w", ErrLogUnavailable, err)
	}
	for i, d := range decisions {
		d.Seq = entries[i].Seq
	}
	recorded = true
	return decisions, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// ProviderConfig is an entity provider and its deadline.
type ProviderConfig struct {
	Name     string
	Provider EntityProvider
	Timeout  time.Duration // default 50ms
}

// ReasonProviderFailed is the built-in reason of a decision denied because
// an entity provider failed or was too slow.
const ReasonProviderFailed = "entity_provider_failed"

// provide asks every entity provider about a prepared request. Provider
// entities override the request's own: the inventory is trusted, the
// caller's claims are not. They are recorded so replay sees them.
func (e *Engine) provide(ctx context.Context, req *wire.Request, p *prepared) {
	for _, pc := range e.opts.EntityProviders {
		timeout := pc.Timeout
		if timeout <= 0 {
			timeout = 50 * time.Millisecond
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		ents, err := pc.Provider.Entities(cctx, req)
		cancel()
		if err != nil {
			p.providerFailure = fmt.Sprintf("entity provider %s: %v", pc.Name, err)
			return
		}
		if err := p.addProvided(ents, pc.Name, mask.Token); err != nil {
			p.providerFailure = fmt.Sprintf("entity provider %s: %v", pc.Name, err)
			return
		}
	}
}

// addProvided normalises entities from a provider into the request's,
// holding every string to check.
func (p *prepared) addProvided(ents []wire.Entity, source string, check func(string) error) error {
	if len(ents) == 0 {
		return nil
	}
	if p.entities == nil {
		p.entities = types.EntityMap{}
	}
	for i, in := range ents {
		field := fmt.Sprintf("%s/%d", source, i)
		ent, out, err := normalizeEntity(in, field+"/attrs", field+"/tags", check, nil)
		if err != nil {
			return err
		}
		p.entities[ent.UID] = ent
		p.provided = append(p.provided, out)
	}
	return nil
}

// entityPointers are the JSON pointers of inline entities' attributes and
// tags, which NormalizeRecord takes to name a refusal: the first few are made
// once rather than for every request.
type entityPointers struct{ attrs, tags string }

var firstInlinePointers = func() (ps [8]entityPointers) {
	for i := range ps {
		ps[i] = makeInlinePointers(i)
	}
	return ps
}()

func makeInlinePointers(i int) entityPointers {
	field := "/entities/" + strconv.Itoa(i)
	return entityPointers{attrs: field + "/attrs", tags: field + "/tags"}
}

// inlinePointers are /entities/<i>/attrs and /entities/<i>/tags.
func inlinePointers(i int) entityPointers {
	if i < len(firstInlinePointers) {
		return firstInlinePointers[i]
	}
	return makeInlinePointers(i)
}

// normalizeEntity converts an entity for Cedar and for the log, normalising
// its attributes and tags as a request's context is; attrsField and
// tagsField are their JSON pointers, for a refusal. memo, if not nil,
// remembers entities read under check.
func normalizeEntity(in wire.Entity, attrsField, tagsField string, check func(string) error, memo *inlineMemo) (types.Entity, wire.Entity, error) {
	read := func(raw json.RawMessage, field string) (types.Record, json.RawMessage, error) {
		if memo != nil {
			return memo.attrs.Normalize(raw, field)
		}
		return wire.NormalizeRecord(raw, field, check)
	}
	attrs, attrsJSON, err := read(in.Attrs, attrsField)
	if err != nil {
		return types.Entity{}, wire.Entity{}, err
	}
	tags, tagsJSON, err := read(in.Tags, tagsField)
	if err != nil {
		return types.Entity{}, wire.Entity{}, err
	}
	parents := noParents
	if len(in.Parents) > 0 {
		var one [1]types.EntityUID // the usual case, without an allocation
		uids := one[:0]
		for _, ref := range in.Parents {
			uids = append(uids, ref.UID())
		}
		var sets *parentSets
		if memo != nil {
			sets = &memo.parents
		}
		parents = sets.of(uids)
	}
	uid := in.UID.UID()
	out := wire.Entity{UID: in.UID, Attrs: attrsJSON, Parents: in.Parents}
	if len(in.Tags) > 0 {
		out.Tags = tagsJSON
	}
	return types.Entity{UID: uid, Attributes: attrs, Tags: tags, Parents: parents}, out, nil
}

// noParents is the parents of every entity without any: the set is
// immutable, so one serves them all.
var noParents = types.NewEntityUIDSet()

// EntityProvider adds Cedar entities to a request, such as an agent's owner
// and team from an inventory. The plugins package runs providers as
// go-plugin binaries.
type EntityProvider interface {
	Entities(ctx context.Context, req *wire.Request) ([]wire.Entity, error)
}
