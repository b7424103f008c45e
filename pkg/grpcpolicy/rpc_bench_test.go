package grpcpolicy_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/rpc"
	pb "github.com/peervault/pvlb/proto/peervault/v1"
)

// BenchmarkUnaryRPC compares, in one run against the same three local demo
// servers, a unary call through LoadBalancedClient with one through a plain
// grpc.ClientConn balanced by grpc-go's round_robin.
func BenchmarkUnaryRPC(b *testing.B) {
	servers := testtools.DemoServers(b, 3)
	req := &pb.GetUserDataRequest{UserId: "u1"}

	b.Run("grpc-go_round_robin", func(b *testing.B) {
		r := manual.NewBuilderWithScheme("bench")
		var addrs []resolver.Address
		for _, s := range servers {
			addrs = append(addrs, resolver.Address{Addr: s.Addr()})
		}
		r.InitialState(resolver.State{Addresses: addrs})
		cc, err := grpc.NewClient("bench:///peervault",
			grpc.WithResolvers(r),
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Close()
		runUnary(b, pb.NewPeerVaultServiceClient(cc), req)
	})

	b.Run("pvlb_LoadBalancedClient", func(b *testing.B) {
		client, err := rpc.NewLoadBalancedClient(newBalancer(b, config(lb.RoundRobin), servers), nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer client.Close()
		runUnary(b, pb.NewPeerVaultServiceClient(client), req)
	})

	b.Run("pvlb_grpc_channel", func(b *testing.B) {
		runUnary(b, newChannel(b, newBalancer(b, config(lb.RoundRobin), servers), len(servers)), req)
	})
}

func runUnary(b *testing.B, stub pb.PeerVaultServiceClient, req *pb.GetUserDataRequest) {
	ctx := context.Background()
	for range 100 { // connect and warm up
		if _, err := stub.GetUserData(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := stub.GetUserData(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := stub.GetUserData(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
