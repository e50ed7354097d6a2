package client

import (
	"context"
	"net/http"

	"github.com/agentpdp/agentpdp/pdp"
)

// Status is the admin socket's GET /v1/status, as far as a client needs it:
// the policies being served and the last reload error.
type Status struct {
	Policies pdp.ReloadStatus `json:"policies"`
	PID      int              `json:"pid"`
	LogError string           `json:"log_error,omitempty"` // the daemon could not read its log's size
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
