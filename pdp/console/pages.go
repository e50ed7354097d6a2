package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/decisionlog/fleet"
	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/server"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// view is what every page template gets.
type view struct {
	Title string
	Nav   string // the nav entry to mark current
	User  string
	CSRF  string
	Now   time.Time
	Flash string
	Data  any
}

func (s *Server) page(sess *session, title, nav string, data any) *view {
	return &view{Title: title, Nav: nav, User: sess.user, CSRF: sess.csrf, Now: s.cfg.Now(), Data: data}
}

// problem answers with a page saying what went wrong, in the layout when
// there is a session.
func (s *Server) problem(w http.ResponseWriter, r *http.Request, sess *session, status int, title, msg string) {
	v := &view{Title: title, Data: msg, Now: s.cfg.Now()}
	if sess != nil {
		v.User, v.CSRF = sess.user, sess.csrf
	}
	s.render(w, r, status, "problem", v)
}

// --- overview ---

type overviewData struct {
	Since      time.Time
	Totals     map[string]int64
	Total      int64
	Chart      *chart
	TopDenied  []bar // principals
	TopTools   []bar // resources
	Waiting    int
	Status     *client.Status
	StatusErr  string
	LastSeq    int64
	Checkpoint *decisionlog.Entry
}

type bar struct {
	Key   string
	Count int64
	Width int // percent of the largest
	Href  string
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx := r.Context()
	now := s.cfg.Now()
	until := now.Truncate(time.Hour).Add(time.Hour)
	since := until.Add(-24 * time.Hour)
	d := &overviewData{Since: since, Totals: map[string]int64{}}
	tl, err := s.cfg.Reader.Timeline(ctx, since, until, time.Hour)
	if err != nil {
		s.fail(w, r, sess, err)
		return
	}
	for _, b := range tl {
		for k, n := range b.Counts {
			d.Totals[k] += n
			d.Total += n
		}
	}
	d.Chart = timelineChart(tl)
	toBars := func(cs []decisionlog.Count, param string) []bar {
		var out []bar
		var top int64 = 1
		for _, c := range cs {
			top = max(top, c.Count)
		}
		for _, c := range cs {
			q := url.Values{param: {c.Key}, "decision": {string(wire.Deny)}, "since": {"24h"}}
			out = append(out, bar{Key: c.Key, Count: c.Count, Width: int(c.Count * 100 / top), Href: "/search?" + q.Encode()})
		}
		return out
	}
	principals, err := s.cfg.Reader.Top(ctx, "principal", string(wire.Deny), since, 5)
	if err != nil {
		s.fail(w, r, sess, err)
		return
	}
	tools, err := s.cfg.Reader.Top(ctx, "resource", string(wire.Deny), since, 5)
	if err != nil {
		s.fail(w, r, sess, err)
		return
	}
	d.TopDenied, d.TopTools = toBars(principals, "principal"), toBars(tools, "resource")
	pend, err := s.pending(ctx)
	if err != nil {
		s.fail(w, r, sess, err)
		return
	}
	d.Waiting = len(pend)
	if d.LastSeq, err = s.cfg.Reader.LastSeq(ctx); err != nil {
		s.fail(w, r, sess, err)
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if d.Status, err = s.cfg.Admin.Status(sctx); err != nil {
		d.StatusErr = err.Error()
	}
	s.render(w, r, http.StatusOK, "overview", s.page(sess, "Overview", "overview", d))
}

// --- approvals ---

type pendingItem struct {
	*explained
	Expires time.Time
}

// pending returns the step_up decisions of the last PendingWindow that no
// one has answered, the one expiring first first.
func (s *Server) pending(ctx context.Context) ([]pendingItem, error) {
	since := s.cfg.Now().Add(-s.cfg.PendingWindow)
	steps, err := s.cfg.Reader.Query(ctx, decisionlog.Filter{Kinds: []decisionlog.Kind{decisionlog.KindDecision}, Decision: string(wire.StepUp), Since: since, Limit: 200})
	if err != nil {
		return nil, err
	}
	if len(steps) == 0 {
		return nil, nil
	}
	// An approval is written after the decision it answers, so those since
	// the oldest step_up shown are all that can answer one.
	answered := map[string]bool{}
	err = s.cfg.Reader.ScanFilter(ctx, decisionlog.Filter{Kinds: []decisionlog.Kind{decisionlog.KindApproval}, FromSeq: steps[len(steps)-1].Seq}, func(e *decisionlog.Entry) error {
		var a struct {
			DecisionID string `json:"decision_id"`
		}
		if json.Unmarshal(e.Body, &a) == nil {
			answered[a.DecisionID] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []pendingItem
	for i := len(steps) - 1; i >= 0 && len(out) < 50; i-- {
		e := steps[i]
		var id struct {
			DecisionID string `json:"decision_id"`
		}
		if json.Unmarshal(e.Body, &id) != nil || answered[id.DecisionID] {
			continue
		}
		x, err := explainEntry(ctx, s.cfg.Reader, e)
		if err != nil {
			return nil, err
		}
		out = append(out, pendingItem{explained: x, Expires: e.Time.Add(s.cfg.PendingWindow)})
	}
	return out, nil
}

type approvalsData struct {
	Items  []pendingItem
	Window time.Duration
}

func (s *Server) approvals(w http.ResponseWriter, r *http.Request, sess *session) {
	items, err := s.pending(r.Context())
	if err != nil {
		s.fail(w, r, sess, err)
		return
	}
	v := s.page(sess, "Waiting for you", "approvals", &approvalsData{Items: items, Window: s.cfg.PendingWindow})
	switch r.URL.Query().Get("done") {
	case "approved":
		v.Flash = "Approved. The agent may now retry with the approval."
	case "rejected":
		v.Flash = "Rejected."
	}
	s.render(w, r, http.StatusOK, "approvals", v)
}

// approvalsLive is GET /approvals/live: server-sent events, each a
// "pending" event whose data is the list of waiting step-ups as HTML, sent
// when the log grows (and every 10 s, so that expired ones leave).
func (s *Server) approvalsLive(w http.ResponseWriter, r *http.Request, sess *session) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	ctx := r.Context()
	tick := time.NewTicker(s.cfg.Poll)
	defer tick.Stop()
	last, sent := int64(-1), time.Time{}
	for {
		seq, err := s.cfg.Reader.LastSeq(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.logger.Warn("console: live approvals: read log", "err", err)
			}
			return
		}
		if seq != last || time.Since(sent) >= 10*time.Second {
			items, err := s.pending(ctx)
			if err != nil {
				if ctx.Err() == nil {
					s.logger.Warn("console: live approvals", "err", err)
				}
				return
			}
			var buf bytes.Buffer
			v := s.page(sess, "", "", &approvalsData{Items: items, Window: s.cfg.PendingWindow})
			if err := s.pages.fragment(&buf, "pending-list", v); err != nil {
				s.logger.Error("console: render live approvals", "err", err)
				return
			}
			fmt.Fprintf(w, "event: pending\nid: %d\n", seq)
			for _, line := range strings.Split(buf.String(), "\n") {
				fmt.Fprintf(w, "data: %s\n", line)
			}
			fmt.Fprint(w, "\n")
			flusher.Flush()
			last, sent = seq, time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			return
		case <-tick.C:
		}
	}
}

// approve is POST /decisions/{id}/approval: decision=approve|reject and a
// comment. The approver sent to the daemon is the signed-in account; the
// form has no field for it.
func (s *Server) approve(w http.ResponseWriter, r *http.Request, sess *session) {
	id := r.PathValue("id")
	var approved bool
	switch r.PostFormValue("decision") {
	case "approve":
		approved = true
	case "reject":
	default:
		s.problem(w, r, sess, http.StatusBadRequest, "Bad form", "decision: want approve or reject.")
		return
	}
	comment := strings.TrimSpace(r.PostFormValue("comment"))
	if len(comment) > 2000 {
		s.problem(w, r, sess, http.StatusBadRequest, "Bad form", "comment: at most 2000 bytes.")
		return
	}
	entry, err := s.cfg.Reader.Decision(r.Context(), id)
	if err != nil {
		s.fail(w, r, sess, err)
		return
	}
	var rec wire.DecisionRecord
	if err := json.Unmarshal(entry.Body, &rec); err != nil {
		s.fail(w, r, sess, err)
		return
	}
	if rec.Decision != wire.StepUp {
		s.problem(w, r, sess, http.StatusConflict, "Cannot approve", fmt.Sprintf("Decision %s was %s, not step_up: only a step-up can be approved.", id, rec.Decision))
		return
	}
	if age := s.cfg.Now().Sub(entry.Time); age >= s.cfg.PendingWindow {
		s.problem(w, r, sess, http.StatusConflict, "Too late", fmt.Sprintf("Decision %s asked %s ago; the console takes answers for %s. The agent must ask again.", id, age.Round(time.Second), s.cfg.PendingWindow))
		return
	}
	if _, err := s.cfg.Admin.Approve(r.Context(), id, sess.user, approved, comment); err != nil {
		var ce *client.Error
		if errors.As(err, &ce) && ce.Status == http.StatusConflict {
			s.problem(w, r, sess, http.StatusConflict, "Already answered", ce.Message)
			return
		}
		s.logger.Error("console: record approval", "decision_id", id, "user", sess.user, "err", err)
		s.problem(w, r, sess, http.StatusBadGateway, "Not recorded", "The daemon did not record the answer: "+err.Error())
		return
	}
	verb := "rejected"
	if approved {
		verb = "approved"
	}
	s.logger.Info("console: step-up answered", "decision_id", id, "user", sess.user, "answer", verb)
	http.Redirect(w, r, "/decisions/"+url.PathEscape(id)+"?done="+verb, http.StatusSeeOther)
}

// --- decision, chain ---

type decisionData struct {
	*explained
	Pending bool // a step_up still in the window, unanswered
	Expires time.Time
}

func (s *Server) decision(w http.ResponseWriter, r *http.Request, sess *session) {
	x, err := explain(r.Context(), s.cfg.Reader, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, sess, err)
		return
	}
	d := &decisionData{explained: x, Expires: x.Entry.Time.Add(s.cfg.PendingWindow)}
	d.Pending = x.Record.Decision == wire.StepUp && len(x.Approvals) == 0 && s.cfg.Now().Before(d.Expires)
	v := s.page(sess, "Decision "+x.Record.DecisionID, "search", d)
	switch r.URL.Query().Get("done") {
	case "approved":
		v.Flash = "Approved by " + sess.user + ". The agent may now retry with this decision as its approval."
	case "rejected":
		v.Flash = "Rejected by " + sess.user + "."
	}
	s.render(w, r, http.StatusOK, "decision", v)
}

type chainData struct {
	Root  *chainNode
	Focus string
	Nodes int
	// Trace and InTrace: the focus decision's trace id, and the decisions
	// of that trace the tree does not hold (linked by no parent id).
	Trace   string
	InTrace []searchRow
}

func (s *Server) chain(w http.ResponseWriter, r *http.Request, sess *session) {
	id := r.PathValue("id")
	root, n, err := chain(r.Context(), s.cfg.Reader, id)
	if err != nil {
		s.fail(w, r, sess, err)
		return
	}
	d := &chainData{Root: root, Focus: id, Nodes: n}
	inTree := map[string]bool{}
	var walk func(*chainNode)
	walk = func(c *chainNode) {
		inTree[c.Record.DecisionID] = true
		if c.Focus && c.Record.Request != nil {
			d.Trace = c.Record.Request.TraceID
		}
		for _, ch := range c.Children {
			walk(ch)
		}
	}
	walk(root)
	if d.Trace != "" {
		es, err := s.cfg.Reader.Query(r.Context(), decisionlog.Filter{Kinds: []decisionlog.Kind{decisionlog.KindDecision}, TraceID: d.Trace, Limit: 200})
		if err != nil {
			s.fail(w, r, sess, err)
			return
		}
		for i := len(es) - 1; i >= 0; i-- {
			row := searchRow{Entry: es[i]}
			if json.Unmarshal(es[i].Body, &row.Record) == nil && !inTree[row.Record.DecisionID] {
				d.InTrace = append(d.InTrace, row)
			}
		}
	}
	s.render(w, r, http.StatusOK, "chain", s.page(sess, "Chain of "+id, "search", d))
}

// --- search ---

// searchFields are the filters of `agentpdp log query`, as query
// parameters: the admin API's names, and the CLI's for the rest.
var searchFields = []struct{ Name, Label, Hint string }{
	{"principal", "Principal", `Agent::"id" or a bare id`},
	{"action", "Action", `Action::"id" or a bare id`},
	{"resource", "Resource (tool)", `Tool::"id" or a bare id`},
	{"session_id", "Session", ""},
	{"task_id", "Task", ""},
	{"trace_id", "Trace", ""},
	{"classification", "Classification", "public, confidential, …"},
	{"on_behalf_of", "On behalf of", ""},
	{"credential_id", "Credential id", "jti"},
	{"tool_call_id", "Tool call id", ""},
	{"parent_decision_id", "Parent decision", ""},
	{"approval_id", "Used approval", "decision id of the step-up"},
	{"decision_id", "Decision id", ""},
	{"peer_uid", "Caller uid", "as the kernel saw it"},
	{"since", "Since", "15m, 24h or RFC 3339"},
	{"until", "Until", "as since"},
}

type searchData struct {
	Fields   []searchField
	Decision string
	Shadow   bool
	Limit    int
	Error    string
	Rows     []searchRow
	Next     string // the next page's URL, or ""
	First    string // the first page's URL, when not on it
	Searched bool
}

type searchField struct {
	Name, Label, Hint, Value string
}

type searchRow struct {
	Entry  *decisionlog.Entry
	Record wire.DecisionRecord
}

const defaultPage = 50

func (s *Server) search(w http.ResponseWriter, r *http.Request, sess *session) {
	q := r.URL.Query()
	d := &searchData{Decision: q.Get("decision"), Shadow: q.Get("shadow_diff") != "", Limit: defaultPage}
	for _, f := range searchFields {
		d.Fields = append(d.Fields, searchField{f.Name, f.Label, f.Hint, q.Get(f.Name)})
	}
	f, err := searchFilter(q, s.cfg.Now())
	status := http.StatusOK
	if err != nil {
		d.Error, status = err.Error(), http.StatusBadRequest
	} else {
		d.Limit = f.Limit
		entries, err := s.cfg.Reader.Query(r.Context(), f)
		if err != nil {
			s.fail(w, r, sess, err)
			return
		}
		for _, e := range entries {
			row := searchRow{Entry: e}
			if json.Unmarshal(e.Body, &row.Record) == nil {
				d.Rows = append(d.Rows, row)
			}
		}
		d.Searched = true
		if len(entries) == f.Limit {
			next := cloneValues(q)
			next.Set("before_seq", strconv.FormatInt(entries[len(entries)-1].Seq, 10))
			d.Next = "/search?" + next.Encode()
		}
		if f.BeforeSeq > 0 {
			first := cloneValues(q)
			first.Del("before_seq")
			d.First = "/search?" + first.Encode()
		}
	}
	s.render(w, r, status, "search", s.page(sess, "Search", "search", d))
}

func cloneValues(q url.Values) url.Values {
	out := url.Values{}
	for k, vs := range q {
		for _, v := range vs {
			if v != "" {
				out.Add(k, v)
			}
		}
	}
	return out
}

// searchFilter reads the search form. Empty fields are no filter; an
// unknown parameter or a bad value is an error naming it.
func searchFilter(q url.Values, now time.Time) (decisionlog.Filter, error) {
	f := decisionlog.Filter{Kinds: []decisionlog.Kind{decisionlog.KindDecision}, Limit: defaultPage}
	known := map[string]bool{"decision": true, "shadow_diff": true, "limit": true, "before_seq": true}
	for _, sf := range searchFields {
		known[sf.Name] = true
	}
	for k := range q {
		if !known[k] {
			return f, fmt.Errorf("%s: unknown filter", k)
		}
	}
	get := func(k string) string { return strings.TrimSpace(q.Get(k)) }
	f.Principal, f.Action, f.Resource = get("principal"), get("action"), get("resource")
	f.SessionID, f.TaskID, f.TraceID = get("session_id"), get("task_id"), get("trace_id")
	f.Classification, f.OnBehalfOf = get("classification"), get("on_behalf_of")
	f.CredentialID, f.ToolCallID = get("credential_id"), get("tool_call_id")
	f.ParentDecisionID, f.ApprovalID, f.DecisionID = get("parent_decision_id"), get("approval_id"), get("decision_id")
	f.ShadowDiff = get("shadow_diff") != ""
	switch d := get("decision"); wire.Verdict(d) {
	case "", wire.Allow, wire.Deny, wire.StepUp:
		f.Decision = d
	default:
		return f, fmt.Errorf("decision: %q: want allow, deny or step_up", d)
	}
	if v := get("peer_uid"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return f, fmt.Errorf("peer_uid: %q: want a uid", v)
		}
		uid := uint32(n)
		f.PeerUID = &uid
	}
	for _, tp := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := get(tp.name); v != "" {
			t, err := server.ParseTime(v, now)
			if err != nil {
				return f, fmt.Errorf("%s: %w", tp.name, err)
			}
			*tp.dst = t
		}
	}
	for _, ip := range []struct {
		name string
		dst  *int64
		max  int64
	}{{"limit", new(int64), 500}, {"before_seq", &f.BeforeSeq, 1 << 62}} {
		if v := get(ip.name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 || n > ip.max {
				return f, fmt.Errorf("%s: %q: want a whole number from 1 to %d", ip.name, v, ip.max)
			}
			*ip.dst = n
			if ip.name == "limit" {
				f.Limit = int(n)
			}
		}
	}
	return f, nil
}

// --- integrity ---

type integrityData struct {
	Stats       decisionlog.Stats
	Origin      string
	Checkpoints []checkpointRow
	Cosigned    []cosignatureRow
	Verify      *verifyResult
	KeyChecked  bool
	WitnessKey  bool // cosignatures are checked
}

// cosignatureRow is a cosignature row: a witness's cosignature of one of
// the log's checkpoints, kept by the http sink (witness: true).
type cosignatureRow struct {
	Entry   *decisionlog.Entry
	Body    decisionlog.Cosignature
	Witness string    // the key name on the cosignature line
	At      time.Time // the cosignature's timestamp (cosignature/v1); zero if unreadable
	Cosigns int64     // seq of the log's own checkpoint row with the same body; 0 if none listed
	SigOK   *bool     // nil without a witness key
	Problem string    // why it does not verify, or does not match the log
}

type checkpointRow struct {
	Entry        *decisionlog.Entry
	Checkpoint   *decisionlog.Checkpoint
	SigOK        *bool
	Signers      []string // the key names that signed the note (C2SP signature lines)
	Cosignatures string   // witness cosignatures: signature lines by others than the log, or a row's own list
}

// noteSigners returns the key names on a signed note's signature lines
// ("— name base64"), in order.
func noteSigners(n string) []string {
	_, sigs, ok := strings.Cut(n, "\n\n")
	if !ok {
		return nil
	}
	var out []string
	for _, line := range strings.Split(sigs, "\n") {
		if name, ok := strings.CutPrefix(line, "\u2014 "); ok {
			if i := strings.IndexByte(name, ' '); i > 0 {
				out = append(out, name[:i])
			}
		}
	}
	return out
}

func (s *Server) integrity(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx := r.Context()
	d := &integrityData{KeyChecked: s.cfg.PublicKey != nil}
	var err error
	if d.Stats, err = s.cfg.Reader.Stats(ctx); err != nil {
		s.fail(w, r, sess, err)
		return
	}
	d.Origin, _ = s.cfg.Reader.Origin(ctx)
	cps, err := s.cfg.Reader.Query(ctx, decisionlog.Filter{Kinds: []decisionlog.Kind{decisionlog.KindCheckpoint}, Limit: 20})
	if err != nil {
		s.fail(w, r, sess, err)
		return
	}
	for _, e := range cps {
		row := checkpointRow{Entry: e}
		if c, err := decisionlog.ParseCheckpoint(e.Body); err == nil {
			row.Checkpoint = c
			if s.cfg.PublicKey != nil {
				ok := c.Verify(s.cfg.PublicKey) == nil
				row.SigOK = &ok
			}
			row.Signers = noteSigners(c.Note)
			var witnesses []string
			for _, name := range row.Signers {
				if name != c.Origin {
					witnesses = append(witnesses, name)
				}
			}
			row.Cosignatures = strings.Join(witnesses, "\n")
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(e.Body, &m) == nil {
			for _, k := range []string{"cosignatures", "witness_cosignatures"} {
				if v, ok := m[k]; ok {
					row.Cosignatures = indentJSON(v)
				}
			}
		}
		d.Checkpoints = append(d.Checkpoints, row)
	}
	if d.Cosigned, err = s.cosignatures(ctx, d.Origin, d.Checkpoints); err != nil {
		s.fail(w, r, sess, err)
		return
	}
	d.WitnessKey = s.cfg.WitnessKey != nil
	for _, c := range d.Cosigned {
		for i := range d.Checkpoints {
			if c.Cosigns != 0 && d.Checkpoints[i].Entry.Seq == c.Cosigns {
				d.Checkpoints[i].Cosignatures = strings.TrimSpace(d.Checkpoints[i].Cosignatures + "\n" + c.Witness + " (row " + strconv.FormatInt(c.Entry.Seq, 10) + ")")
			}
		}
	}
	s.verifyMu.Lock()
	d.Verify = s.lastVerify
	s.verifyMu.Unlock()
	s.render(w, r, http.StatusOK, "integrity", s.page(sess, "Integrity", "integrity", d))
}

// cosignatures reads the newest cosignature rows and says, for each, which
// of the listed checkpoints it cosigns, its witness and time, and, with a
// witness key, whether it verifies and is of this log's checkpoint at its
// tree size.
func (s *Server) cosignatures(ctx context.Context, origin string, cps []checkpointRow) ([]cosignatureRow, error) {
	rows, err := s.cfg.Reader.Query(ctx, decisionlog.Filter{Kinds: []decisionlog.Kind{decisionlog.KindCosignature}, Limit: 20})
	if err != nil {
		return nil, err
	}
	bySize := map[int64]checkpointRow{}
	for _, c := range cps {
		if c.Checkpoint != nil {
			bySize[c.Checkpoint.Seq] = c
		}
	}
	var out []cosignatureRow
	for _, e := range rows {
		row := cosignatureRow{Entry: e}
		if err := json.Unmarshal(e.Body, &row.Body); err != nil {
			row.Problem = "unreadable cosignature row: " + err.Error()
			out = append(out, row)
			continue
		}
		text := []byte(row.Body.Checkpoint)
		body, _, _ := strings.Cut(row.Body.Checkpoint, "\n\n")
		// The note's signatures, none verified yet: the host's line is
		// named after the origin; the others are witnesses'.
		var unverified *note.UnverifiedNoteError
		if _, err := note.Open(text, note.VerifierList()); errors.As(err, &unverified) {
			for _, sig := range unverified.Note.UnverifiedSigs {
				if sig.Name == origin {
					continue
				}
				if at, err := fnote.CoSigV1Timestamp(sig); err == nil {
					row.Witness, row.At = sig.Name, at
				}
			}
		}
		if c, ok := bySize[row.Body.TreeSize]; ok {
			mine, _, _ := strings.Cut(c.Checkpoint.Note, "\n\n")
			if mine == body {
				row.Cosigns = c.Entry.Seq
			} else {
				row.Problem = fmt.Sprintf("not this log's checkpoint at tree size %d (row %d): another origin or root", row.Body.TreeSize, c.Entry.Seq)
			}
		}
		if key := s.cfg.WitnessKey; key != nil {
			c, err := fleet.VerifyCosigned(text, key)
			switch {
			case err != nil:
				row.Problem = err.Error()
			case c.Origin != origin:
				row.Problem = fmt.Sprintf("cosigns origin %q, not this log's %q", c.Origin, origin)
			case int64(c.Size) != row.Body.TreeSize:
				row.Problem = fmt.Sprintf("cosigns tree size %d, the row says %d", c.Size, row.Body.TreeSize)
			default:
				row.Witness, row.At = c.Witness, c.CosignAt
			}
			ok := row.Problem == ""
			row.SigOK = &ok
		}
		out = append(out, row)
	}
	return out, nil
}

// verify is POST /integrity/verify: recompute the chain and check every
// checkpoint now, as `agentpdp log verify` does.
func (s *Server) verify(w http.ResponseWriter, r *http.Request, sess *session) {
	if !s.verifying.CompareAndSwap(false, true) {
		s.problem(w, r, sess, http.StatusConflict, "Busy", "A verification is running; reload the integrity page in a moment.")
		return
	}
	defer s.verifying.Store(false)
	start := time.Now()
	rep, err := s.cfg.Reader.Verify(r.Context(), decisionlog.VerifyOptions{PublicKey: s.cfg.PublicKey})
	res := &verifyResult{At: s.cfg.Now(), Took: time.Since(start), Report: rep}
	if err != nil {
		res.Err = err.Error()
	}
	s.verifyMu.Lock()
	s.lastVerify = res
	s.verifyMu.Unlock()
	s.logger.Info("console: log verified", "user", sess.user, "ok", err == nil, "err", err)
	http.Redirect(w, r, "/integrity", http.StatusSeeOther)
}

// fail answers an infrastructure error: 404 for an unknown id, else 500.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, sess *session, err error) {
	if errors.Is(err, decisionlog.ErrNotFound) {
		s.problem(w, r, sess, http.StatusNotFound, "Not found", err.Error())
		return
	}
	if r.Context().Err() != nil {
		return
	}
	s.logger.Error("console: page failed", "path", r.URL.Path, "err", err)
	s.problem(w, r, sess, http.StatusInternalServerError, "Error", err.Error())
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
