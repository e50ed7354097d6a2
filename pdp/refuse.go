package pdp

import (
	"context"
	"fmt"

	"github.com/agentpdp/agentpdp/pdp/wire"
)

// Refuse records req as a deny with a built-in reason, without asking Cedar
// or using an approval, so that a refusal made outside the engine (a body
// over the size limit, a message a proxy will not relay) is a logged
// decision like any other. reason is wire.ReasonRequestTooLarge or
// wire.ReasonRequestRefused; detail says why.
func (e *Engine) Refuse(ctx context.Context, req *wire.Request, peer *wire.Peer, reason, detail string) (*wire.Decision, error) {
	if !wire.IsRefusal(reason) {
		return nil, wire.BadRequest("", fmt.Errorf("%q is not a refusal reason (%s or %s)", reason, wire.ReasonRequestTooLarge, wire.ReasonRequestRefused))
	}
	ds, err := e.decideBatch(ctx, []*wire.Request{req}, peer, &wire.Reason{Policy: reason, Effect: "forbid", Builtin: true, Detail: detail})
	if err != nil {
		return nil, err
	}
	return ds[0], nil
}
