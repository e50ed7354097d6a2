package plugins

import (
	"context"

	"github.com/hashicorp/go-plugin"

	"github.com/agentpdp/agentpdp/pdp/wire"
)

// Handshake is what agentpdp and a plugin binary must agree on before they
// talk; a plugin built for another protocol version is refused.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "AGENTPDP_PLUGIN",
	MagicCookieValue: "agentpdp-plugin-v1-5f0c",
}

// The kinds of plugin, as go-plugin names them.
const (
	KindSink           = "sink"
	KindEntityProvider = "entity_provider"
)

// EntityProvider is what an entity-provider plugin implements: extra Cedar
// entities for a request, such as an agent's owner and team from an
// inventory. The engine takes any value with this method as a provider.
type EntityProvider interface {
	Entities(ctx context.Context, req *wire.Request) ([]wire.Entity, error)
}

// ServeSink runs a sink plugin. Call it from the plugin binary's main.
func ServeSink(s Sink) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{KindSink: &SinkPlugin{Impl: s}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}

// ServeEntityProvider runs an entity-provider plugin from its main.
func ServeEntityProvider(p EntityProvider) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{KindEntityProvider: &EntityProviderPlugin{Impl: p}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}
