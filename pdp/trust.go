package pdp

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cedar-policy/cedar-go/types"

	"github.com/agentpdp/agentpdp/pdp/identity"
	"github.com/agentpdp/agentpdp/pdp/policy"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// The trust boundary. Every fact a decision uses has a source (identity.Source):
// a token checked against a configured issuer (verified), the kernel
// (attested), the policy directory and entity providers (trusted), or the
// request (claimed). A claim never changes or extends a trusted or
// verified fact: admit refuses an inline entity a trusted source knows,
// and the guards deny a principal the evidence does not support.

// RequestEntities says which entities a request may send inline.
type RequestEntities string

const (
	// RequestEntitiesRefuse refuses every inline entity.
	RequestEntitiesRefuse RequestEntities = "refuse"
	// RequestEntitiesUnknownOnly (the default) lets a request add only
	// entities no trusted source knows, never of type Action, and never the
	// principal unless a callers rule with define_principal binds it.
	RequestEntitiesUnknownOnly RequestEntities = "unknown_only"
	// RequestEntitiesTrusted lets inline entities add to and override the
	// entity files (entity providers still override them): the behaviour
	// before the trust boundary, for deployments whose only callers are trusted.
	RequestEntitiesTrusted RequestEntities = "trusted"
)

// Deny reasons of the trust boundary (DESIGN.md, "Evidence, not claims").
const (
	ReasonPrincipalMismatch   = "principal_mismatch"
	ReasonPrincipalNotBound   = "principal_not_bound"
	ReasonUnknownPrincipal    = "unknown_principal"
	ReasonTokenInvalid        = identity.ReasonTokenInvalid
	ReasonCredentialLongLived = identity.ReasonCredentialLongLived
)

// trustReasons are the builtin reasons admit's guards give: a replay takes
// them from the row, since the evidence (the token) is not kept.
var trustReasons = map[string]bool{
	ReasonPrincipalMismatch: true, ReasonPrincipalNotBound: true, ReasonUnknownPrincipal: true,
	ReasonTokenInvalid: true, ReasonCredentialLongLived: true,
}

// TrustOptions configure the trust boundary of an Engine.
type TrustOptions struct {
	RequestEntities RequestEntities // default RequestEntitiesUnknownOnly
	// AllowUnknownPrincipal decides for principals no entity file or
	// provider knows; by default they are denied (unknown_principal).
	AllowUnknownPrincipal bool
	// Verifier checks tokens; nil accepts none (a request carrying one is
	// denied token_invalid).
	Verifier *identity.Verifier
	Require  identity.Require // default identity.RequireAny
	// Callers bind kernel-attested callers to principals (compiled); when
	// there are any, a principal no rule binds is denied principal_not_bound.
	Callers identity.Callers
	// SharedWindow is how long a principal's callers are remembered to flag
	// a shared identity; 0 means 10 minutes, negative disables.
	SharedWindow time.Duration
}

func (o *TrustOptions) check() error {
	switch o.RequestEntities {
	case "":
		o.RequestEntities = RequestEntitiesUnknownOnly
	case RequestEntitiesRefuse, RequestEntitiesUnknownOnly, RequestEntitiesTrusted:
	default:
		return fmt.Errorf("request_entities %q: want refuse, unknown_only or trusted", o.RequestEntities)
	}
	switch o.Require {
	case "":
		o.Require = identity.RequireAny
	case identity.RequireAny:
	case identity.RequireAttested:
		if len(o.Callers) == 0 && o.Verifier == nil {
			return fmt.Errorf("identity.require attested needs callers rules or an identity issuer")
		}
	case identity.RequireVerified:
		if o.Verifier == nil {
			return fmt.Errorf("identity.require verified needs an identity issuer")
		}
	default:
		return fmt.Errorf("identity.require %q: want any, attested or verified", o.Require)
	}
	if err := o.Callers.Compile(); err != nil {
		return err
	}
	if o.SharedWindow == 0 {
		o.SharedWindow = 10 * time.Minute
	}
	return nil
}

// trust is what admit established about one request.
type trust struct {
	admitted bool // admit ran (not in CedarSemantics mode)
	inline   []wire.Entity
	evidence wire.Evidence
	guard    *evaluation // a deny the evidence calls for, before any policy
	unknown  *evaluation // unknown_principal: after an entity provider's failure, which explains it better
	shared   bool
}

// evidence is the evidence for the decision's row, nil when admit did not
// run: what admit established, and the source of each entity the request
// and the entity providers sent.
func (p *prepared) evidence() *wire.Evidence {
	t := &p.trust
	if !t.admitted {
		return nil
	}
	ev := &t.evidence
	if n := len(t.inline) + len(p.provided); n > 0 && ev.Entities == nil {
		ev.Entities = make(map[string]string, n)
		for _, in := range t.inline {
			ev.Entities[p.uidString(in.UID.UID())] = string(identity.SourceClaimed)
		}
		for _, pe := range p.provided {
			ev.Entities[p.uidString(pe.UID.UID())] = string(identity.SourceTrusted)
		}
	}
	return ev
}

// sharedCount counts decisions flagged shared_identity, for the metric.
type sharedCount struct{ n atomic.Uint64 }

// SharedIdentities is how many decisions so far were flagged
// shared_identity: agentpdp_shared_identity_total.
func (e *Engine) SharedIdentities() uint64 { return e.shared.n.Load() }

// entityField is entities[i], a refusal's field.
func entityField(i int) string { return "entities[" + strconv.Itoa(i) + "]" }

func isAction(t types.EntityType) bool {
	return t == "Action" || strings.HasSuffix(string(t), "::Action")
}

func builtinDeny(reason, detail string) *evaluation {
	return &evaluation{decision: wire.Deny, reasons: []wire.Reason{{Policy: reason, Effect: "forbid", Builtin: true, Detail: detail}}}
}

// admit applies the trust boundary to a prepared request: it refuses
// (*wire.RequestError, a 400) inline entities the configuration does not
// allow, verifies the token, binds the caller, sets context.identity and
// context.caller, replaces the claimed credential with the verified one,
// and leaves in p.trust the deny the evidence calls for, if any. peer is
// nil in process (check, tests): no caller rule binds it.
func (e *Engine) admit(ctx context.Context, snap *policy.Snapshot, req *wire.Request, p *prepared, peer *wire.Peer, given *identity.Identity, now time.Time) error {
	o := &e.opts.Trust
	t := &p.trust
	t.admitted = true
	ev := &t.evidence
	ev.Context = string(identity.SourceClaimed)
	ev.Principal = string(identity.SourceClaimed)

	// Who is calling: the kernel's word, then the callers rule that binds it.
	var caller *identity.Caller
	if peer != nil {
		caller = &identity.Caller{PID: peer.PID, UID: peer.UID, GID: peer.GID, Exe: peer.Exe, Cgroup: peer.Cgroup}
		ev.Caller = string(identity.SourceAttested)
	}
	principal := p.cedar.Principal
	var bound *identity.CallerRule
	if len(o.Callers) > 0 {
		if bound = o.Callers.Bind(caller, principal); bound != nil {
			ev.Principal = string(identity.SourceAttested)
		}
	}

	// Inline entities: never an action, never what a trusted source knows,
	// never the principal unless its caller may define it; and each must
	// match the schema.
	var provided map[types.EntityUID]bool // nil (no providers, the usual case) reads as empty
	if len(p.provided) > 0 {
		provided = make(map[types.EntityUID]bool, len(p.provided))
		for _, pe := range p.provided {
			provided[pe.UID.UID()] = true
		}
	}
	for i, in := range req.Entities {
		uid := in.UID.UID()
		switch {
		case isAction(uid.Type):
			return wire.BadRequest(entityField(i)+".uid", fmt.Errorf("%s: actions and their groups come from the schema; a request cannot send an Action entity", uid))
		case o.RequestEntities == RequestEntitiesRefuse:
			return wire.BadRequest(entityField(i), fmt.Errorf("%s: request_entities is refuse: entities come from the policy directory and entity providers", uid))
		case o.RequestEntities == RequestEntitiesUnknownOnly && snap.Knows(uid):
			return wire.BadRequest(entityField(i), fmt.Errorf("%s is known to a trusted source (the policy directory's entities or schema); a request cannot change its attributes, parents or tags", uid))
		case o.RequestEntities == RequestEntitiesUnknownOnly && provided[uid]:
			return wire.BadRequest(entityField(i), fmt.Errorf("%s is known to a trusted source (an entity provider); a request cannot change its attributes, parents or tags", uid))
		case o.RequestEntities == RequestEntitiesUnknownOnly && uid == principal && (bound == nil || !bound.DefinePrincipal):
			return wire.BadRequest(entityField(i), fmt.Errorf("%s is the principal; only a caller whose callers rule has define_principal may describe it", uid))
		}
		if o.RequestEntities == RequestEntitiesUnknownOnly {
			// Membership is the group's fact: a claimed entity that names a
			// trusted one as its parent would join it (resource in G).
			for j, parent := range in.Parents {
				if pu := parent.UID(); snap.Knows(pu) || provided[pu] {
					return wire.BadRequest(fmt.Sprintf("%s.parents[%d]", entityField(i), j), fmt.Errorf("%s names %s as its parent, which a trusted source knows; a request cannot add members to it", uid, pu))
				}
			}
		}
		if err := snap.ValidateEntity(p.entities[uid]); err != nil {
			return wire.BadRequest(entityField(i), fmt.Errorf("%s does not match the schema: %v", uid, err))
		}
	}
	t.inline = req.Entities // their sources are written out by record, for the row only

	// The token: verified, or the reason it is not.
	id := given
	var facts *wire.IdentityFacts
	switch {
	case given != nil:
		facts = &wire.IdentityFacts{}
	case req.Token != "":
		facts = &wire.IdentityFacts{}
		var err error
		switch {
		case o.Verifier == nil:
			err = &identity.TokenError{Reason: identity.ReasonTokenInvalid, Why: identity.WhyIssuer, Detail: "no identity issuer is configured"}
		default:
			id, err = o.Verifier.Verify(ctx, req.Token)
		}
		// A verified token's identity carries the thumbprint Verify
		// computed; only a token it refused is hashed here.
		if err == nil {
			facts.TokenSHA256 = id.Thumbprint
		} else {
			facts.TokenSHA256 = identity.Thumbprint(req.Token)
		}
		if err != nil {
			te, ok := err.(*identity.TokenError)
			if !ok {
				te = &identity.TokenError{Reason: identity.ReasonTokenInvalid, Why: identity.WhyMalformed, Detail: err.Error()}
			}
			facts.Error = te.Error()
			t.guard = builtinDeny(te.Reason, te.Why+": "+te.Detail)
		}
	}
	ev.Identity = facts
	if id != nil {
		verified(facts, id)
		ev.Credential = string(identity.SourceVerified)
		cred := &wire.Credential{ID: id.ID, Issuer: id.Issuer, Subject: id.Subject, Scopes: id.Scopes, IssuedAt: id.IssuedAt, ExpiresAt: id.ExpiresAt}
		p.logged.Credential = cred
		if len(id.Actors) > 0 {
			p.logged.OnBehalfOf = id.Subject
			ev.OnBehalfOf = string(identity.SourceVerified)
		}
		if err := e.maskVerified(p, len(id.Actors) > 0); err != nil {
			return err
		}
		// The request's principal is verified only when it is the one the
		// token verifies; a mismatch leaves it claimed (or attested).
		if id.Principal() != p.principalString() {
			t.guard = builtinDeny(ReasonPrincipalMismatch, fmt.Sprintf("the token verifies %s; the request names %s", id.Principal(), principal))
		} else {
			ev.Principal = string(identity.SourceVerified)
		}
	}
	if ev.Credential == "" && req.Credential != nil {
		ev.Credential = string(identity.SourceClaimed)
	}
	if ev.OnBehalfOf == "" && p.logged.OnBehalfOf != "" {
		ev.OnBehalfOf = string(identity.SourceClaimed)
	}

	// The guards, first match wins.
	if t.guard == nil {
		switch {
		case len(o.Callers) > 0 && bound == nil && id == nil:
			t.guard = builtinDeny(ReasonPrincipalNotBound, notBound(caller, principal))
		case o.Require == identity.RequireVerified && id == nil:
			t.guard = builtinDeny(ReasonTokenInvalid, "missing: identity.require is verified and the request carries no token")
		case o.Require == identity.RequireAttested && id == nil && bound == nil:
			t.guard = builtinDeny(ReasonPrincipalNotBound, "identity.require is attested: "+notBound(caller, principal))
		}
	}
	switch {
	case snap.Knows(principal) || provided[principal]:
		ev.PrincipalEntity = string(identity.SourceTrusted)
	case p.entities[principal].UID == principal:
		ev.PrincipalEntity = string(identity.SourceClaimed)
	case !o.AllowUnknownPrincipal && (snap.DescribesType(principal.Type) || len(e.opts.EntityProviders) > 0):
		// The trusted sources describe principals of this type (or a
		// provider is the inventory), and none describes this one.
		t.unknown = builtinDeny(ReasonUnknownPrincipal, fmt.Sprintf("%s is not in the policy directory's entities or any entity provider's answer", principal))
	}
	switch res := p.cedar.Resource; {
	case snap.Knows(res) || provided[res]:
		ev.ResourceEntity = string(identity.SourceTrusted)
	case p.entities[res].UID == res:
		ev.ResourceEntity = string(identity.SourceClaimed)
	}

	if caller != nil && e.sharedTracker != nil {
		if e.sharedTracker.Observe(p.principalString(), caller.UID, caller.Exe, now) {
			t.shared = true
			e.shared.n.Add(1)
		}
	}
	// Policies that cannot name context.identity or context.caller do not
	// pay for building them.
	if e.addsEvidence(snap) {
		addEvidence(p, ev.Identity, peer, &e.callerRecords)
	}
	return nil
}

// addsEvidence says admit adds context.identity and context.caller: the
// policies, live or shadow, can name one of them.
func (e *Engine) addsEvidence(snap *policy.Snapshot) bool {
	return e.mentions(snap, "identity") || e.mentions(snap, "caller")
}

// mentions is Snapshot.Mentions over the live snapshot and the shadow one,
// which sees the same context.
func (e *Engine) mentions(snap *policy.Snapshot, key string) bool {
	if snap.Mentions(key) {
		return true
	}
	sh := e.shadow.Load()
	return sh != nil && sh.Mentions(key)
}

// maskVerified applies the operator's masks to what a verified token put
// in the logged request after prepare masked it: the credential, and
// on_behalf_of when obo (a delegated token set it). The masked pointers
// and strings join p's, so the row names them and messages quoting them
// are redacted.
func (e *Engine) maskVerified(p *prepared, obo bool) error {
	if e.masker == nil {
		return nil
	}
	sub := wire.Request{Credential: p.logged.Credential}
	if obo {
		sub.OnBehalfOf = p.logged.OnBehalfOf
	}
	masked, red, err := e.masker.Apply(&sub)
	if err != nil {
		return err
	}
	if obo {
		p.logged.OnBehalfOf = sub.OnBehalfOf
	}
	for _, ptr := range masked {
		if !slices.Contains(p.masked, ptr) {
			p.masked = append(p.masked, ptr)
		}
	}
	p.redact = p.redact.Merge(red)
	return nil
}

func verified(f *wire.IdentityFacts, id *identity.Identity) {
	f.Verified = true
	f.Issuer, f.IssuerName, f.Subject, f.SPIFFEID = id.Issuer, id.IssuerName, id.Subject, id.SPIFFEID
	f.Scopes, f.Actors = id.Scopes, id.Actors
	f.Principal = id.Principal()
}

func notBound(c *identity.Caller, principal types.EntityUID) string {
	if c == nil {
		return fmt.Sprintf("no kernel credentials for the caller; no callers rule binds it to %s", principal)
	}
	return fmt.Sprintf("no callers rule lets uid %d gid %d exe %q cgroup %q act as %s", c.UID, c.GID, c.Exe, c.Cgroup, principal)
}

// addEvidence adds context.identity and context.caller to p's context,
// before its record is made: only the daemon sets them (prepare refuses a
// request that sets them). callers, if not nil, keeps the last caller's
// record.
func addEvidence(p *prepared, f *wire.IdentityFacts, peer *wire.Peer, callers *callerCache) {
	id := unverified
	if f != nil && f.Verified {
		id = types.NewRecord(types.RecordMap{"verified": types.True,
			"issuer": types.String(f.Issuer), "subject": types.String(f.Subject), "spiffe_id": types.String(f.SPIFFEID),
			"scopes": stringSet(f.Scopes), "actors": stringSet(f.Actors)})
	}
	p.addContext("identity", id)
	if peer != nil {
		p.addContext("caller", callers.record(peer))
	}
}

// callerCache holds context.caller for the last caller seen: the daemon's
// callers are few and each sends many requests, and a record costs a map,
// its clone and a hash of every member to make. The zero value (and nil)
// is ready to use.
type callerCache struct{ last atomic.Pointer[cachedCaller] }

type cachedCaller struct {
	uid, gid    uint32
	exe, cgroup string
	rec         types.Record
}

// record is context.caller for peer: uid, gid, exe and cgroup, the
// kernel's word (the pid is not in it).
func (c *callerCache) record(peer *wire.Peer) types.Record {
	if c != nil {
		if l := c.last.Load(); l != nil && l.uid == peer.UID && l.gid == peer.GID && l.exe == peer.Exe && l.cgroup == peer.Cgroup {
			return l.rec
		}
	}
	rec := types.NewRecord(types.RecordMap{
		"uid": types.Long(peer.UID), "gid": types.Long(peer.GID),
		"exe": types.String(peer.Exe), "cgroup": types.String(peer.Cgroup),
	})
	if c != nil {
		c.last.Store(&cachedCaller{uid: peer.UID, gid: peer.GID, exe: peer.Exe, cgroup: peer.Cgroup, rec: rec})
	}
	return rec
}

// unverified is context.identity without a verified token, built once:
// records are immutable.
var unverified = types.NewRecord(types.RecordMap{"verified": types.False, "issuer": types.String(""), "subject": types.String(""),
	"spiffe_id": types.String(""), "scopes": types.NewSet(), "actors": types.NewSet()})

func stringSet(ss []string) types.Set {
	vs := make([]types.Value, len(ss))
	for i, s := range ss {
		vs[i] = types.String(s)
	}
	return types.NewSet(vs...)
}

// EvaluateAs decides req as Evaluate does, for a caller the kernel
// reported as peer, with id as what its token verified to: the caller and
// identity a policy test case states (agentpdp test). Nothing is verified
// or recorded; it is for tests of policies, never for requests from outside.
func (e *Engine) EvaluateAs(req *wire.Request, peer *wire.Peer, id *identity.Identity) (*wire.Decision, error) {
	return e.evaluateWith(req, peer, id)
}

// reservedContext are the context keys only the daemon sets.
var reservedContext = []string{"caller", "identity"}

// replayTrust restores what admit established from the row: the token is
// not kept, so a verified or refused identity, the caller and the guard the
// evidence called for are taken as recorded, and policies see the same
// context.identity and context.caller.
func replayTrust(p *prepared, rec *wire.DecisionRecord) {
	for _, r := range rec.Reasons {
		if !r.Builtin || !trustReasons[r.Policy] {
			continue
		}
		g := builtinDeny(r.Policy, r.Detail)
		if r.Policy == ReasonUnknownPrincipal {
			p.trust.unknown = g
		} else {
			p.trust.guard = g
		}
	}
	if ev := rec.Evidence; ev != nil {
		p.trust.admitted = true
		p.trust.evidence = *ev
		addEvidence(p, ev.Identity, rec.Peer, nil)
	}
}
