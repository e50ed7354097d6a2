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
	"time"

	"github.com/agentpdp/agentpdp/pdp"
)

// Client is safe for concurrent use and reuses connections.
type Client struct {
	socket string
	http   *http.Client
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
func (c *Client) Authorize(ctx context.Context, req *pdp.Request) (*pdp.Decision, error) {
	var d pdp.Decision
	if err := c.Do(ctx, http.MethodPost, "/v1/authorize", req, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// AuthorizeBatch asks for decisions in one round trip and one commit; the
// answers are in the order of the requests.
func (c *Client) AuthorizeBatch(ctx context.Context, reqs []*pdp.Request) ([]*pdp.Decision, error) {
	var out struct {
		Decisions []*pdp.Decision `json:"decisions"`
	}
	if err := c.Do(ctx, http.MethodPost, "/v1/authorize/batch", map[string]any{"requests": reqs}, &out); err != nil {
		return nil, err
	}
	if len(out.Decisions) != len(reqs) {
		return nil, fmt.Errorf("agentpdp: %d decisions for %d requests", len(out.Decisions), len(reqs))
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
