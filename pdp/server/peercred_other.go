//go:build !linux

package server

import (
	"net"

	"github.com/agentpdp/agentpdp/pdp/wire"
)

// peerOf is Linux-only: elsewhere decisions are logged without a peer.
func peerOf(net.Conn) *wire.Peer { return nil }
