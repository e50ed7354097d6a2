// Package plugins is agentpdp's plugin SDK: the interfaces a plugin
// implements (a [Sink] of log rows, an [EntityProvider] of Cedar entities),
// the go-plugin handshake, [ServeSink] and [ServeEntityProvider] for a
// plugin's main, and the gRPC glue between plugin and host. It imports only
// pdp/wire of agentpdp, so a plugin builds without the daemon (and without
// cgo). The host that launches plugins is plugins/host; the built-in sinks
// are plugins/sink; the shipper that feeds sinks is plugins/shipper.
package plugins

import (
	"context"
	"errors"
	"time"
)

// Row is one log row as shipped: a JSON object with origin, seq, kind, time,
// hash and the row's own fields (a decision row carries decision_id and
// decision at the top level).
type Row = []byte

// Batch is a run of consecutive rows of one log.
type Batch struct {
	Origin   string
	FirstSeq int64
	LastSeq  int64
	Rows     []Row
}

// Sink ships batches. Ship returns nil once the batch is safely upstream.
// An error is retried with backoff, unless it is a *PermanentError: then
// retrying cannot help (a 4xx, say), and the sink stops until restarted.
type Sink interface {
	Name() string
	Ship(ctx context.Context, b *Batch) error
	Close() error
}

// PermanentError is a failure that retrying will not fix. Its text is
// Err's: the kind is the type (see [IsPermanent]), not a word in the
// message, so wrapping it twice (a plugin's error crosses gRPC as its text
// and a flag) never repeats anything.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// TooLargeError is a receiver's "too large" answer: 413, or a 400 whose
// message says so (an OpenTelemetry Collector with max_request_body_size
// answers 400 "request body too large"). The shipper splits the batch,
// and ships a row refused alone as a stub.
type TooLargeError struct{ Err error }

func (e *TooLargeError) Error() string { return e.Err.Error() }
func (e *TooLargeError) Unwrap() error { return e.Err }

// IsTooLarge reports whether err is a TooLargeError.
func IsTooLarge(err error) bool {
	var te *TooLargeError
	return errors.As(err, &te)
}

// Permanent wraps err as a PermanentError.
func Permanent(err error) error { return &PermanentError{Err: err} }

// IsPermanent reports whether err is a PermanentError.
func IsPermanent(err error) bool {
	var pe *PermanentError
	return errors.As(err, &pe)
}

// RetryAfterError asks the shipper to wait at least After before retrying.
type RetryAfterError struct {
	Err   error
	After time.Duration
}

func (e *RetryAfterError) Error() string { return e.Err.Error() }
func (e *RetryAfterError) Unwrap() error { return e.Err }
