package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/agentpdp/agentpdp/pdp/wire"
	"github.com/agentpdp/agentpdp/plugins/internal/proto"
)

// This file only translates between the Go interfaces and the gRPC
// messages; the behaviour lives in the implementations on either side.

// SinkPlugin is the go-plugin glue of a Sink.
type SinkPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Sink // plugin side only
}

// GRPCServer serves Impl.
func (p *SinkPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	proto.RegisterSinkServer(s, &sinkServer{impl: p.Impl})
	return nil
}

// GRPCClient returns a Sink speaking to the plugin.
func (p *SinkPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &sinkClient{rpc: proto.NewSinkClient(c)}, nil
}

type sinkServer struct {
	proto.UnimplementedSinkServer
	impl Sink
}

func (s *sinkServer) Ship(ctx context.Context, req *proto.ShipRequest) (*proto.ShipResponse, error) {
	err := s.impl.Ship(ctx, &Batch{Origin: req.Origin, FirstSeq: req.FirstSeq, LastSeq: req.LastSeq, Rows: req.Rows})
	if err == nil {
		return &proto.ShipResponse{}, nil
	}
	resp := &proto.ShipResponse{Error: err.Error(), Permanent: IsPermanent(err)}
	var ra *RetryAfterError
	if errors.As(err, &ra) {
		resp.RetryAfterMs = ra.After.Milliseconds()
	}
	return resp, nil
}

type sinkClient struct{ rpc proto.SinkClient }

func (c *sinkClient) Name() string { return "" } // named by the host
func (c *sinkClient) Close() error { return nil }

func (c *sinkClient) Ship(ctx context.Context, b *Batch) error {
	resp, err := c.rpc.Ship(ctx, &proto.ShipRequest{Origin: b.Origin, FirstSeq: b.FirstSeq, LastSeq: b.LastSeq, Rows: b.Rows})
	if err != nil {
		return err // transport: retryable
	}
	if resp.Error == "" {
		return nil
	}
	err = errors.New(resp.Error)
	switch {
	case resp.Permanent:
		return Permanent(err)
	case resp.RetryAfterMs > 0:
		return &RetryAfterError{Err: err, After: time.Duration(resp.RetryAfterMs) * time.Millisecond}
	}
	return err
}

// EntityProviderPlugin is the go-plugin glue of an EntityProvider.
type EntityProviderPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl EntityProvider // plugin side only
}

// GRPCServer serves Impl.
func (p *EntityProviderPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	proto.RegisterEntityProviderServer(s, &providerServer{impl: p.Impl})
	return nil
}

// GRPCClient returns an EntityProvider speaking to the plugin.
func (p *EntityProviderPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &providerClient{rpc: proto.NewEntityProviderClient(c)}, nil
}

type providerServer struct {
	proto.UnimplementedEntityProviderServer
	impl EntityProvider
}

func (s *providerServer) Entities(ctx context.Context, req *proto.EntitiesRequest) (*proto.EntitiesResponse, error) {
	r, err := wire.DecodeRequest(req.Request)
	if err != nil {
		return nil, err
	}
	ents, err := s.impl.Entities(ctx, r)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(ents)
	if err != nil {
		return nil, err
	}
	return &proto.EntitiesResponse{Entities: b}, nil
}

type providerClient struct{ rpc proto.EntityProviderClient }

func (c *providerClient) Entities(ctx context.Context, req *wire.Request) ([]wire.Entity, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	resp, err := c.rpc.Entities(ctx, &proto.EntitiesRequest{Request: b})
	if err != nil {
		return nil, err
	}
	var ents []wire.Entity
	if err := json.Unmarshal(resp.Entities, &ents); err != nil {
		return nil, err
	}
	return ents, nil
}
