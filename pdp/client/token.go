package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// TokenSource gives the bearer token for one request: a JWT or a SPIFFE
// JWT-SVID, without the "Bearer " prefix. An error stops the request
// before anything is sent: a client that cannot read its token does not
// fall back to asking without one.
type TokenSource func(ctx context.Context) (string, error)

// StaticToken always gives tok.
func StaticToken(tok string) TokenSource {
	return func(context.Context) (string, error) { return tok, nil }
}

// TokenFile gives the token held in the file at path (surrounding
// whitespace trimmed), read again whenever the file's size or modification
// time changes: a SPIFFE helper or a sidecar that rewrites the file with a
// fresh JWT-SVID is followed without a restart. An empty or unreadable
// file is an error naming the path, never the token.
func TokenFile(path string) TokenSource {
	var (
		mu    sync.Mutex
		size  int64 = -1
		mtime time.Time
		tok   string
	)
	return func(context.Context) (string, error) {
		fi, err := os.Stat(path)
		if err != nil {
			return "", fmt.Errorf("token file: %w", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if fi.Size() == size && fi.ModTime().Equal(mtime) {
			return tok, nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("token file: %w", err)
		}
		t := string(bytes.TrimSpace(b))
		if t == "" {
			return "", fmt.Errorf("token file %s is empty", path)
		}
		if err := checkToken(t); err != nil {
			return "", fmt.Errorf("token file %s: %w", path, err)
		}
		size, mtime, tok = fi.Size(), fi.ModTime(), t
		return tok, nil
	}
}

// checkToken refuses what cannot be one bearer token (RFC 6750 b64token):
// an empty one, or one with spaces or control characters, which would
// split or inject a header. The error never quotes the token.
func checkToken(tok string) error {
	if tok == "" {
		return errors.New("empty")
	}
	if strings.HasPrefix(tok, "Bearer ") || strings.HasPrefix(tok, "bearer ") {
		return errors.New(`give the token without the "Bearer " prefix`)
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("a space, control or non-ASCII character at byte %d: a bearer token is one word", i)
		}
	}
	return nil
}
