package shipper_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/agentpdp/agentpdp/internal/pdptest"
	"github.com/agentpdp/agentpdp/plugins"
	"github.com/agentpdp/agentpdp/plugins/sink"
)

// TestShip_ErrorsNameTheSinkOnce: the shipper names the sink once in the
// error it returns; a sink's status (which is the sink's own entry) holds
// the failure without the name; nothing is prefixed twice, neither a sink
// that is down nor one that refuses for good.
func TestShip_ErrorsNameTheSinkOnce(t *testing.T) {
	path, _ := pdptest.LogWith(t, 3)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String() + "/ingest"
	ln.Close() // a receiver that is down
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "schema mismatch", http.StatusUnprocessableEntity)
	}))
	defer refusing.Close()

	for _, tc := range []struct {
		name, url, want string
	}{
		{"Down", down, fmt.Sprintf(`Post %q: dial tcp %s: connect: connection refused`, down, down[len("http://"):len(down)-len("/ingest")])},
		{"RefusedForGood", refusing.URL, "422 Unprocessable Entity: schema mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sk, err := sink.New(sink.Config{Name: "upstream", Type: "http", URL: tc.url})
			if err != nil {
				t.Fatal(err)
			}
			s := pdptest.Shipper(t, path, sk)
			err = s.Once(t.Context())
			if got, want := fmt.Sprint(err), "sink upstream: "+tc.want; got != want {
				t.Errorf("Once:\n got %s\nwant %s", got, want)
			}
			if got := s.Status(context.Background())[0].LastError; got != tc.want {
				t.Errorf("last_error:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// A permanent error keeps its text whatever wraps it: the kind is a type,
// not a word in the message (a plugin's permanent error crosses gRPC as
// its text and a flag).
func TestPermanentError_Text(t *testing.T) {
	err := plugins.Permanent(errors.New("422 Unprocessable Entity: schema mismatch"))
	if got := err.Error(); got != "422 Unprocessable Entity: schema mismatch" || !plugins.IsPermanent(fmt.Errorf("sink x: %w", err)) {
		t.Errorf("got %q", got)
	}
}
