//go:build !linux

package pdp

import "net"

// peerOf is Linux-only: elsewhere decisions are logged without a peer.
func peerOf(net.Conn) *Peer { return nil }
