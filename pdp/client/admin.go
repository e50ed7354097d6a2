package client

import (
	"context"
	"net/http"
	"time"
)

// Status is the admin socket's GET /v1/status, as far as a client needs it:
// the policies being served and the last reload error.
type Status struct {
	Policies PolicyStatus `json:"policies"`
	PID      int          `json:"pid"`
	LogError string       `json:"log_error,omitempty"` // the daemon could not read its log's size
}

// PolicyStatus is what the daemon serves and how its reloads went.
type PolicyStatus struct {
	PolicyVersion     string     `json:"policy_version"`
	Files             []string   `json:"files"`
	Policies          int        `json:"policies"`
	LoadedAt          time.Time  `json:"loaded_at"`
	Reloads           int64      `json:"reloads"`
	ReloadFailures    int64      `json:"reload_failures"`
	LastReloadError   string     `json:"last_reload_error,omitempty"`
	LastReloadErrorAt *time.Time `json:"last_reload_error_at,omitempty"`
	LastReloadOK      bool       `json:"last_reload_ok"` // false while loads are refused
	LastReloadOKAt    *time.Time `json:"last_reload_ok_at,omitempty"`
}

// Status reads the daemon's state. It works only on a client of the admin
// socket.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	if err := c.Do(ctx, http.MethodGet, "/v1/status", nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}
