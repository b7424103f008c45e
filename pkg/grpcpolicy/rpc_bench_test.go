package grpcpolicy_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/pkg/demoserver"
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
		runUnary(b, pb.NewPeerVaultServiceClient(grpcChannel(b, servers, `{"loadBalancingConfig":[{"round_robin":{}}]}`)), req)
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
	runUnaryCtx(b, context.Background(), stub, req)
}

func runUnaryCtx(b *testing.B, ctx context.Context, stub pb.PeerVaultServiceClient, req *pb.GetUserDataRequest) {
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

// BenchmarkUnaryRPCByKeyAndLoad compares, in one run, grpc-go's ring_hash
// (hashing a header) and weighted_round_robin (from per-call ORCA
// reports) with pvlb's, on three local demo servers that report their
// load, through a pvlb:/// channel and LoadBalancedClient.
func BenchmarkUnaryRPCByKeyAndLoad(b *testing.B) {
	var cfgs []demoserver.Config
	for range 3 {
		cfgs = append(cfgs, demoserver.Config{Capacity: 10000})
	}
	servers := testtools.DemoServers(b, 3, cfgs...)
	req := &pb.GetUserDataRequest{UserId: "u1"}
	keyed := metadata.AppendToOutgoingContext(context.Background(), "x-user-id", "u1")
	zero := time.Duration(0)
	for _, tc := range []struct {
		name, serviceConfig string
		strategy            lb.StrategyConfig
		ctx                 context.Context
	}{
		{"ring_hash", `{"loadBalancingConfig":[{"ring_hash_experimental":{"requestHashHeader":"x-user-id"}}]}`,
			lb.StrategyConfig{Kind: lb.RingHash, HashKey: &lb.HashKey{Header: "x-user-id"}}, keyed},
		{"weighted_round_robin", `{"loadBalancingConfig":[{"weighted_round_robin":{"blackoutPeriod":"0s"}}]}`,
			lb.StrategyConfig{Kind: lb.WeightedRoundRobin, WeightedRoundRobin: &lb.WeightedRoundRobinConfig{BlackoutPeriod: zero}}, context.Background()},
	} {
		b.Run(tc.name+"/grpc-go", func(b *testing.B) {
			runUnaryCtx(b, tc.ctx, pb.NewPeerVaultServiceClient(grpcChannel(b, servers, tc.serviceConfig)), req)
		})
		balancer, err := lb.New(lb.Config{Service: "peervault", Strategy: tc.strategy}, nil)
		if err != nil {
			b.Fatal(err)
		}
		testtools.AddServers(b, balancer, servers)
		b.Run(tc.name+"/pvlb_grpc_channel", func(b *testing.B) {
			runUnaryCtx(b, tc.ctx, newChannelTo(b, balancer), req)
		})
		client, err := rpc.NewLoadBalancedClient(balancer, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name+"/pvlb_LoadBalancedClient", func(b *testing.B) {
			runUnaryCtx(b, tc.ctx, pb.NewPeerVaultServiceClient(client), req)
		})
		client.Close()
	}
}
