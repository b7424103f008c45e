package grpcpolicy_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	_ "google.golang.org/grpc/balancer/ringhash" // grpc-go's ring_hash, to compare with
	"google.golang.org/grpc/metadata"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/pkg/demoserver"
	"github.com/peervault/pvlb/pkg/lb"
	pb "github.com/peervault/pvlb/proto/peervault/v1"
)

// grpcRingHashChannel dials servers with grpc-go's own ring_hash, hashing
// the x-user-id header (gRFC A76), ring sizes as given.
func grpcRingHashChannel(t *testing.T, servers []*demoserver.Server, minRing, maxRing int) pb.PeerVaultServiceClient {
	t.Helper()
	sc := fmt.Sprintf(`{"loadBalancingConfig": [{"ring_hash_experimental": {"minRingSize": %d, "maxRingSize": %d, "requestHashHeader": "x-user-id"}}]}`, minRing, maxRing)
	return pb.NewPeerVaultServiceClient(grpcChannel(t, servers, sc))
}

// servedByKey calls once per key, the key in x-user-id, and records
// which server answered.
func servedByKey(t *testing.T, stub pb.PeerVaultServiceClient, keys []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, k := range keys {
		ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-user-id", k), 10*time.Second)
		resp, err := stub.GetUserData(ctx, &pb.GetUserDataRequest{UserId: k}, grpc.WaitForReady(true))
		cancel()
		if err != nil {
			t.Fatalf("key %s: %v", k, err)
		}
		out[k] = resp.GetServer()
	}
	return out
}

// pvlb's ring_hash and grpc-go's pick the same server for every key, on
// the same real servers, at grpc-go's default ring sizes and at others,
// so that a fleet can move from one to the other without moving keys.
// pvlb is checked on both of its paths: a pvlb:/// channel and a
// LoadBalancedClient.
func TestRingHashPicksAsGRPCGoDoes(t *testing.T) {
	servers := testtools.DemoServers(t, 6)
	keys := make([]string, 300)
	for i := range keys {
		keys[i] = fmt.Sprintf("user-%d", i)
	}
	for _, size := range [][2]int{{lb.DefaultMinRingSize, lb.DefaultMaxRingSize}, {64, 64}, {4096, 4096}} {
		t.Run(fmt.Sprintf("ring=%d..%d", size[0], size[1]), func(t *testing.T) {
			want := servedByKey(t, grpcRingHashChannel(t, servers, size[0], size[1]), keys)
			balancer, err := lb.New(lb.Config{Service: "peervault", Strategy: lb.StrategyConfig{
				Kind: lb.RingHash, MinRingSize: size[0], MaxRingSize: size[1], HashKey: &lb.HashKey{Header: "x-user-id"},
			}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			testtools.AddServers(t, balancer, servers)
			client := testtools.LoadBalancedClient(t, balancer, nil)
			for name, stub := range map[string]pb.PeerVaultServiceClient{
				"pvlb:/// channel":   newChannelTo(t, balancer),
				"LoadBalancedClient": pb.NewPeerVaultServiceClient(client),
			} {
				got := servedByKey(t, stub, keys)
				spread := map[string]int{}
				for _, k := range keys {
					spread[want[k]]++
					if got[k] != want[k] {
						t.Fatalf("%s: key %s went to %s, grpc-go's ring_hash sent it to %s", name, k, got[k], want[k])
					}
				}
				t.Logf("%s: all %d keys on grpc-go's server; keys per server %v", name, len(keys), spread)
			}
		})
	}
}

// A key's server going down moves only that server's keys, on a real
// channel; keys of the others stay where they were.
func TestMaglevFailoverMovesOnlyTheDownServersKeys(t *testing.T) {
	servers := testtools.DemoServers(t, 4)
	balancer, err := lb.New(lb.Config{Service: "peervault", Strategy: lb.StrategyConfig{
		Kind: lb.Maglev, HashKey: &lb.HashKey{Header: "x-user-id"},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	testtools.AddServers(t, balancer, servers)
	stub := newChannel(t, balancer, 4)
	keys := make([]string, 200)
	for i := range keys {
		keys[i] = fmt.Sprintf("user-%d", i)
	}
	before := servedByKey(t, stub, keys)
	if err := balancer.SetHealth(servers[1].Name(), lb.HealthUnhealthy); err != nil {
		t.Fatal(err)
	}
	after := servedByKey(t, stub, keys)
	moved := 0
	for _, k := range keys {
		switch {
		case after[k] == servers[1].Name():
			t.Fatalf("key %s still on the unhealthy server", k)
		case before[k] == servers[1].Name():
			moved++
		case after[k] != before[k]:
			t.Fatalf("key %s moved from healthy %s to %s", k, before[k], after[k])
		}
	}
	if moved == 0 {
		t.Fatal("the unhealthy server had no keys to move")
	}
	if err := balancer.SetHealth(servers[1].Name(), lb.HealthHealthy); err != nil {
		t.Fatal(err)
	}
	back := servedByKey(t, stub, keys)
	for _, k := range keys {
		if back[k] != before[k] {
			t.Fatalf("key %s: %s after recovery, %s before", k, back[k], before[k])
		}
	}
}
