// Package client talks to an agentpdp daemon over its Unix socket, with the
// request and decision types of package pdp, so that Go callers and the
// server share one definition of the wire API.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/agentpdp/agentpdp/internal/plural"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// Client is safe for concurrent use and reuses connections.
type Client struct {
	socket string
	http   *http.Client
	token  TokenSource
}

// WithToken returns a client that sends the token src gives as
// Authorization: Bearer with every request: a JWT or a SPIFFE JWT-SVID the
// daemon verifies. src is called per request, so that a refreshed token is
// picked up; when it fails, nothing is sent and the call returns its error.
func (c *Client) WithToken(src TokenSource) *Client {
	cp := *c
	cp.token = src
	return &cp
}

// New returns a client for the daemon listening on socket.
func New(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	return &Client{socket: socket, http: &http.Client{Transport: tr}}
}

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Error is an answer other than 200 from the daemon.
type Error struct {
	Status  int    // HTTP status: 400 bad request, 404 not found, 503 log unavailable
	Message string // the daemon's "error"
}

func (e *Error) Error() string { return fmt.Sprintf("agentpdp: %d: %s", e.Status, e.Message) }

// Authorize asks for one decision. The decision is durable in the log when
// it returns.
func (c *Client) Authorize(ctx context.Context, req *wire.Request) (*wire.Decision, error) {
	var d wire.Decision
	if err := c.Do(ctx, http.MethodPost, "/v1/authorize", req, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// AuthorizeBatch asks for decisions in one round trip and one commit; the
// answers are in the order of the requests.
func (c *Client) AuthorizeBatch(ctx context.Context, reqs []*wire.Request) ([]*wire.Decision, error) {
	var out struct {
		Decisions []*wire.Decision `json:"decisions"`
	}
	if err := c.Do(ctx, http.MethodPost, "/v1/authorize/batch", map[string]any{"requests": reqs}, &out); err != nil {
		return nil, err
	}
	if len(out.Decisions) != len(reqs) {
		return nil, fmt.Errorf("agentpdp: %s for %s", plural.Count(len(out.Decisions), "decision", "decisions"), plural.Count(len(reqs), "request", "requests"))
	}
	return out.Decisions, nil
}

// Health returns the policy version being served.
func (c *Client) Health(ctx context.Context) (string, error) {
	var out struct {
		Status        string `json:"status"`
		PolicyVersion string `json:"policy_version"`
	}
	if err := c.Do(ctx, http.MethodGet, "/v1/health", nil, &out); err != nil {
		return "", err
	}
	return out.PolicyVersion, nil
}

// Do sends in (JSON, unless nil) to path and decodes a 200 answer into out.
// Other answers are *Error. It serves the admin endpoints too.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	return c.do(ctx, method, path, nil, in, out)
}

// Refuse records req as a decision deny with a built-in reason, without
// asking Cedar: reason is wire.ReasonRequestRefused (the caller will not
// carry it out, for example a proxy that will not forward what it read) or
// wire.ReasonRequestTooLarge; detail says why. The decision is durable when
// it returns.
func (c *Client) Refuse(ctx context.Context, req *wire.Request, reason, detail string) (*wire.Decision, error) {
	h := http.Header{}
	h.Set(wire.HeaderRefuse, reason)
	h.Set(wire.HeaderRefuseDetail, strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' ' // a header value holds no control characters
		}
		return r
	}, detail))
	var d wire.Decision
	if err := c.do(ctx, http.MethodPost, "/v1/authorize", h, req, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

func (c *Client) do(ctx context.Context, method, path string, header http.Header, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("agentpdp: encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://agentpdp"+path, body)
	if err != nil {
		return err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if c.token != nil {
		tok, err := c.token(ctx)
		if err == nil {
			err = checkToken(tok)
		}
		if err != nil {
			return fmt.Errorf("agentpdp: token: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("agentpdp %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("agentpdp: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = string(bytes.TrimSpace(b))
		}
		return &Error{Status: resp.StatusCode, Message: e.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("agentpdp: decode answer: %w", err)
	}
	return nil
}

// IsStatus reports whether err is an answer with the given HTTP status.
func IsStatus(err error, status int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == status
}

// Outcome reports what happened after a decision: status is success, error
// or skipped; detail, if not nil, is recorded as JSON. It returns the
// outcome's seq in the log.
func (c *Client) Outcome(ctx context.Context, decisionID, status string, detail any) (int64, error) {
	body := map[string]any{"status": status}
	if detail != nil {
		body["detail"] = detail
	}
	var out struct {
		Seq int64 `json:"seq"`
	}
	if err := c.Do(ctx, http.MethodPost, "/v1/decisions/"+decisionID+"/outcome", body, &out); err != nil {
		return 0, err
	}
	return out.Seq, nil
}

// Approval is a recorded answer to a step_up decision.
type Approval struct {
	Seq       int64     `json:"seq"`
	Approved  bool      `json:"approved"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Approve records a human's answer to step_up decision id. It works only on
// a client of the admin socket: an agent can never approve itself.
func (c *Client) Approve(ctx context.Context, decisionID, approver string, approved bool, comment string) (*Approval, error) {
	var a Approval
	err := c.Do(ctx, http.MethodPost, "/v1/decisions/"+decisionID+"/approval",
		map[string]any{"approver": approver, "approved": approved, "comment": comment}, &a)
	if err != nil {
		return nil, err
	}
	return &a, nil
}

// DeniedError is Guard's error when the decision was deny.
type DeniedError struct{ Decision *wire.Decision }

func (e *DeniedError) Error() string {
	return "agentpdp: denied by " + reasonList(e.Decision) + " (decision " + e.Decision.DecisionID + ")"
}

// StepUpError is Guard's error when a human must approve first: approve
// Decision.DecisionID on the admin socket, then retry with it as Approval.
type StepUpError struct{ Decision *wire.Decision }

func (e *StepUpError) Error() string {
	return "agentpdp: approval needed (" + reasonList(e.Decision) + "): approve decision " + e.Decision.DecisionID + " and retry with it"
}

func reasonList(d *wire.Decision) string {
	if len(d.Reasons) == 0 {
		return "default deny"
	}
	s := d.Reasons[0].Policy
	for _, r := range d.Reasons[1:] {
		s += ", " + r.Policy
	}
	return s
}

// Guard authorizes req and runs fn only if the answer is allow, then records
// fn's outcome (success, or error with its message). On deny or step_up, fn
// does not run, a skipped outcome is recorded, and the error is a
// *DeniedError or *StepUpError. If the daemon cannot be asked, fn does not
// run: Guard fails closed. A failure to record the outcome is joined to fn's
// error: the action has happened either way.
func (c *Client) Guard(ctx context.Context, req *wire.Request, fn func(ctx context.Context) error) error {
	d, err := c.Authorize(ctx, req)
	if err != nil {
		return err
	}
	switch d.Decision {
	case wire.Allow:
	case wire.StepUp:
		_, oerr := c.Outcome(ctx, d.DecisionID, wire.OutcomeSkipped, nil)
		return errors.Join(&StepUpError{Decision: d}, oerr)
	default:
		_, oerr := c.Outcome(ctx, d.DecisionID, wire.OutcomeSkipped, nil)
		return errors.Join(&DeniedError{Decision: d}, oerr)
	}
	ferr := fn(ctx)
	status, detail := wire.OutcomeSuccess, any(nil)
	if ferr != nil {
		status, detail = wire.OutcomeError, map[string]string{"error": ferr.Error()}
	}
	if _, err := c.Outcome(ctx, d.DecisionID, status, detail); err != nil {
		return errors.Join(ferr, fmt.Errorf("agentpdp: record outcome of %s: %w", d.DecisionID, err))
	}
	return ferr
}
