package pluginapi

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/peervault/pvlb/internal/discoveryv1"
)

// GRPCPlugin is the go-plugin glue: on the plugin side it serves Impl, on
// pvlb's side it returns a Provider that calls the plugin.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Provider
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer registers the provider on the plugin's gRPC server.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterDiscoveryServer(s, &server{impl: p.Impl})
	return nil
}

// GRPCClient returns a Provider backed by the plugin process.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &Client{client: pb.NewDiscoveryClient(c)}, nil
}

// PluginSet is go-plugin's versioned plugin map for this package.
func PluginSet(impl Provider) map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{
		ProtocolVersion: {PluginName: &GRPCPlugin{Impl: impl}},
	}
}

// --- plugin side ---

type server struct {
	pb.UnimplementedDiscoveryServer
	impl Provider
}

func (s *server) GetSchema(context.Context, *pb.GetSchemaRequest) (*pb.GetSchemaResponse, error) {
	return &pb.GetSchemaResponse{Schema: schemaToProto(s.impl.Schema())}, nil
}

func (s *server) Configure(ctx context.Context, req *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	if err := s.impl.Configure(ctx, Settings{raw: req.GetSettingsJson()}); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &pb.ConfigureResponse{}, nil
}

func (s *server) Validate(_ context.Context, req *pb.ValidateRequest) (*pb.ValidateResponse, error) {
	v, ok := s.impl.(Validator)
	if !ok {
		return &pb.ValidateResponse{}, nil
	}
	resp := &pb.ValidateResponse{}
	for _, p := range v.Validate(Settings{raw: req.GetSettingsJson()}) {
		resp.Problems = append(resp.Problems, &pb.Problem{Attribute: p.Attribute, Detail: p.Detail})
	}
	return resp, nil
}

func (s *server) Resolve(ctx context.Context, req *pb.ResolveRequest) (*pb.ResolveResponse, error) {
	instances, err := s.impl.Resolve(ctx, req.GetService())
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &pb.ResolveResponse{Instances: instancesToProto(instances)}, nil
}

func (s *server) Watch(req *pb.WatchRequest, stream grpc.ServerStreamingServer[pb.WatchResponse]) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	updates := make(chan []ServiceInstance)
	done := make(chan error, 1)
	go func() { done <- s.impl.Watch(ctx, req.GetService(), updates) }()
	for {
		select {
		case instances := <-updates:
			if err := stream.Send(&pb.WatchResponse{Instances: instancesToProto(instances)}); err != nil {
				cancel()
				// Drain until the provider returns, in case it sends
				// without watching ctx.
				for {
					select {
					case <-updates:
					case <-done:
						return err
					}
				}
			}
		case err := <-done:
			if err != nil && ctx.Err() == nil {
				return status.Error(codes.Unavailable, err.Error())
			}
			return nil
		}
	}
}

// --- pvlb side ---

// Client is a Provider that calls a plugin process. pvlb's host uses it;
// plugin authors do not need it.
type Client struct {
	client pb.DiscoveryClient
}

var _ Provider = (*Client)(nil)

// Schema asks the plugin for its schema; a plugin that cannot answer has
// an empty schema, and SchemaErr says why.
func (c *Client) Schema() Schema {
	s, _ := c.SchemaErr(context.Background())
	return s
}

// SchemaErr asks the plugin for its schema.
func (c *Client) SchemaErr(ctx context.Context) (Schema, error) {
	resp, err := c.client.GetSchema(ctx, &pb.GetSchemaRequest{})
	if err != nil {
		return Schema{}, fmt.Errorf("schema: %w", plainError(err))
	}
	return schemaFromProto(resp.GetSchema()), nil
}

// Configure sends the settings.
func (c *Client) Configure(ctx context.Context, settings Settings) error {
	if _, err := c.client.Configure(ctx, &pb.ConfigureRequest{SettingsJson: settings.raw}); err != nil {
		return fmt.Errorf("configure: %w", plainError(err))
	}
	return nil
}

// Validate asks the plugin to check settings without connecting. A plugin
// built before the Validate call existed has nothing to say: no problems.
func (c *Client) Validate(ctx context.Context, settings Settings) ([]Problem, error) {
	resp, err := c.client.Validate(ctx, &pb.ValidateRequest{SettingsJson: settings.raw})
	if status.Code(err) == codes.Unimplemented {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("validate: %w", plainError(err))
	}
	problems := make([]Problem, 0, len(resp.GetProblems()))
	for _, p := range resp.GetProblems() {
		problems = append(problems, Problem{Attribute: p.GetAttribute(), Detail: p.GetDetail()})
	}
	return problems, nil
}

// Resolve asks for the instances now.
func (c *Client) Resolve(ctx context.Context, service string) ([]ServiceInstance, error) {
	resp, err := c.client.Resolve(ctx, &pb.ResolveRequest{Service: service})
	if err != nil {
		return nil, fmt.Errorf("resolve %q: %w", service, plainError(err))
	}
	return instancesFromProto(resp.GetInstances()), nil
}

// Watch forwards the plugin's snapshots to updates until ctx ends (nil) or
// the stream fails (the error).
func (c *Client) Watch(ctx context.Context, service string, updates chan<- []ServiceInstance) error {
	stream, err := c.client.Watch(ctx, &pb.WatchRequest{Service: service})
	if err != nil {
		return fmt.Errorf("watch %q: %w", service, plainError(err))
	}
	for {
		resp, err := stream.Recv()
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, io.EOF):
			return fmt.Errorf("watch %q: the plugin ended the stream", service)
		case err != nil:
			return fmt.Errorf("watch %q: %w", service, plainError(err))
		}
		select {
		case updates <- instancesFromProto(resp.GetInstances()):
		case <-ctx.Done():
			return nil
		}
	}
}

// plainError keeps a plugin's message and drops gRPC's decoration.
func plainError(err error) error {
	if st, ok := status.FromError(err); ok {
		if st.Code() == codes.Unavailable && st.Message() == "" {
			return errors.New("the plugin is not answering")
		}
		return errors.New(st.Message())
	}
	return err
}
