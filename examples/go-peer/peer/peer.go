// Package peer is the shared half of the Go peers that scripts/bench.sh measures beside the Rust
// plugin: a backend plugin served by hashicorp/go-plugin (v5 handshake, the Vault/OpenBao cookie,
// AutoMTLS), with multiplexing and a reported version, built from Debian's Go packages and from
// Go code generated at build time from this repository's own proto/ files.
//
// It does what the OpenBao SDK's plugin server does per call (pick the mount's backend by the
// multiplex id in the call's metadata, decode the request's JSON, encode the response's JSON)
// and nothing more. It is not the SDK: see scripts/go-peer.sh for what it lacks.
package peer

import (
	"context"
	"encoding/json"
	"os"
	"sync"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"qlikbench/logical"
	"qlikbench/multiplexing"
	"qlikbench/pb"
)

// Error types of pb.ProtoError (the SDK's logical.Err* values).
const (
	ErrBadRequest           = 4
	ErrUnsupportedOperation = 5
	ErrUnsupportedPath      = 6
)

// Mount is one mounted backend (one per multiplex id).
type Mount interface {
	// Handle answers one request: data is the request's decoded JSON object (nil if none).
	// It returns the response's data (nil for no data) or a ProtoError.
	Handle(op, path string, data map[string]interface{}) (map[string]interface{}, *pb.ProtoError)
	// Exists answers an existence check: found is false when the path has none.
	Exists(path string) (found, exists bool)
}

// Backend is the plugin: its mounts by multiplex id.
type Backend struct {
	pb.UnimplementedBackendServer
	New     func() Mount
	Version string

	mu     sync.RWMutex
	mounts map[string]Mount
}

func multiplexID(ctx context.Context) string {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if ids := md.Get("multiplex_id"); len(ids) == 1 {
			return ids[0]
		}
	}
	return ""
}

func (b *Backend) mount(ctx context.Context) (Mount, *pb.ProtoError) {
	b.mu.RLock()
	m, ok := b.mounts[multiplexID(ctx)]
	b.mu.RUnlock()
	if !ok {
		return nil, &pb.ProtoError{ErrType: 2, ErrMsg: "no backend for this multiplex id"}
	}
	return m, nil
}

func (b *Backend) Setup(ctx context.Context, _ *pb.SetupArgs) (*pb.SetupReply, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mounts == nil {
		b.mounts = map[string]Mount{}
	}
	b.mounts[multiplexID(ctx)] = b.New()
	return &pb.SetupReply{}, nil
}

func (b *Backend) Cleanup(ctx context.Context, _ *pb.Empty) (*pb.Empty, error) {
	b.mu.Lock()
	delete(b.mounts, multiplexID(ctx))
	b.mu.Unlock()
	return &pb.Empty{}, nil
}

func (b *Backend) Initialize(context.Context, *pb.InitializeArgs) (*pb.InitializeReply, error) {
	return &pb.InitializeReply{}, nil
}

func (b *Backend) Type(context.Context, *pb.Empty) (*pb.TypeReply, error) {
	return &pb.TypeReply{Type: 1}, nil // 1: a secrets engine
}

func (b *Backend) SpecialPaths(context.Context, *pb.Empty) (*pb.SpecialPathsReply, error) {
	return &pb.SpecialPathsReply{Paths: &pb.Paths{}}, nil
}

func (b *Backend) InvalidateKey(context.Context, *pb.InvalidateKeyArgs) (*pb.Empty, error) {
	return &pb.Empty{}, nil
}

func (b *Backend) HandleExistenceCheck(ctx context.Context, args *pb.HandleExistenceCheckArgs) (*pb.HandleExistenceCheckReply, error) {
	m, perr := b.mount(ctx)
	if perr != nil {
		return &pb.HandleExistenceCheckReply{Err: perr}, nil
	}
	found, exists := m.Exists(args.GetRequest().GetPath())
	return &pb.HandleExistenceCheckReply{CheckFound: found, Exists: exists}, nil
}

func (b *Backend) HandleRequest(ctx context.Context, args *pb.HandleRequestArgs) (*pb.HandleRequestReply, error) {
	m, perr := b.mount(ctx)
	if perr != nil {
		return &pb.HandleRequestReply{Err: perr}, nil
	}
	req := args.GetRequest()
	var data map[string]interface{}
	if raw := req.GetData(); raw != "" {
		if err := json.Unmarshal([]byte(raw), &data); err != nil {
			return &pb.HandleRequestReply{Err: &pb.ProtoError{ErrType: ErrBadRequest, ErrMsg: "request data is not a JSON object"}}, nil
		}
	}
	out, perr := m.Handle(req.GetOperation(), req.GetPath(), data)
	if perr != nil {
		return &pb.HandleRequestReply{Err: perr}, nil
	}
	text, err := json.Marshal(out) // nil map -> "null", as the SDK sends
	if err != nil {
		return &pb.HandleRequestReply{Err: &pb.ProtoError{ErrType: 2, ErrMsg: err.Error()}}, nil
	}
	return &pb.HandleRequestReply{Response: &pb.Response{Data: string(text)}}, nil
}

type version struct {
	logical.UnimplementedPluginVersionServer
	v string
}

func (v version) Version(context.Context, *logical.Empty) (*logical.VersionReply, error) {
	return &logical.VersionReply{PluginVersion: v.v}, nil
}

type multiplex struct {
	multiplexing.UnimplementedPluginMultiplexingServer
}

func (multiplex) MultiplexingSupport(context.Context, *multiplexing.MultiplexingSupportRequest) (*multiplexing.MultiplexingSupportResponse, error) {
	return &multiplexing.MultiplexingSupportResponse{Supported: true}, nil
}

type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	b *Backend
}

func (p grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterBackendServer(s, p.b)
	logical.RegisterPluginVersionServer(s, version{v: p.b.Version})
	multiplexing.RegisterPluginMultiplexingServer(s, multiplex{})
	return nil
}

func (grpcPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (interface{}, error) {
	return nil, nil // never a client
}

// Serve runs the plugin until the host stops it.
func Serve(b *Backend) {
	if os.Getenv("VAULT_BACKEND_PLUGIN") == "" {
		os.Stderr.WriteString("This binary is a plugin: it is started by OpenBao or Vault, not by hand.\n")
		os.Exit(1)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: plugin.HandshakeConfig{
			MagicCookieKey:   "VAULT_BACKEND_PLUGIN",
			MagicCookieValue: "6669da05-b1c8-4f49-97d9-c8e5bed98e20",
		},
		VersionedPlugins: map[int]plugin.PluginSet{5: {"backend": grpcPlugin{b: b}}},
		GRPCServer:       plugin.DefaultGRPCServer,
	})
}
