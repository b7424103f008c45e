package testtools

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/peervault/pvlb/pkg/grpcpolicy"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/rpc"
)

// LoadBalancedClient returns a client over balancer (cfg nil: the
// defaults), closed when the test ends.
func LoadBalancedClient(t TB, balancer *lb.LoadBalancer, cfg *rpc.LoadBalancedClientConfig, opts ...rpc.ClientOption) *rpc.LoadBalancedClient {
	t.Helper()
	client, err := rpc.NewLoadBalancedClient(balancer, cfg, nil, opts...)
	if err != nil {
		t.Fatalf("load balanced client: %v", err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// CallsChannel dials "pvlb:///" over balancer with calls' interceptors
// running its unary calls and timing its streams (grpc-go's own retries off), closed when the
// test ends.
func CallsChannel(t TB, balancer *lb.LoadBalancer, calls *rpc.ChannelCalls) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("pvlb:///"+balancer.Service(),
		grpc.WithResolvers(grpcpolicy.NewResolverBuilder(balancer)),
		grpc.WithUnaryInterceptor(calls.UnaryInterceptor()),
		grpc.WithStreamInterceptor(calls.StreamInterceptor()),
		grpc.WithDisableRetry(),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("pvlb:/// channel: %v", err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}
