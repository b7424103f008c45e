package grpcpolicy_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/pkg/demoserver"
	"github.com/peervault/pvlb/pkg/latency"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/rpc"
	pb "github.com/peervault/pvlb/proto/peervault/v1"
)

// p99Of makes calls from workers at once and returns their p99 latency.
func p99Of(t *testing.T, stub pb.PeerVaultServiceClient, calls, workers int) time.Duration {
	t.Helper()
	var mu sync.Mutex
	var took []time.Duration
	var wg sync.WaitGroup
	per := calls / workers
	for range workers {
		wg.Go(func() {
			for range per {
				start := time.Now()
				if _, err := stub.GetUserData(context.Background(), &pb.GetUserDataRequest{UserId: "u"}); err != nil {
					t.Error(err)
					return
				}
				d := time.Since(start)
				mu.Lock()
				took = append(took, d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(took)
	return took[len(took)*99/100]
}

// One real server ten times slower than the others, two thousand calls
// from 16 callers at once, through LoadBalancedClient and through a
// pvlb:/// channel, in the same run: peak_ewma sends the slow server a small
// share where round robin sends it a third, and its p99 is lower. The
// figures are logged; the assertions leave room for two shared cores.
func TestPeakEWMAAgainstASlowRealServer(t *testing.T) {
	// Latencies long enough that two shared cores are not what sets them.
	fast, _ := latency.Parse("lognormal(10ms, 30ms)")
	slow, _ := latency.Parse("lognormal(100ms, 300ms)")
	servers := testtools.DemoServers(t, 3,
		demoserver.Config{Latency: &fast, Seed: 1}, demoserver.Config{Latency: &slow, Seed: 2}, demoserver.Config{Latency: &fast, Seed: 3})
	p99 := map[string]time.Duration{}
	slowShare := map[string]float64{}
	measure := func(name string, balancer *lb.LoadBalancer, stub pb.PeerVaultServiceClient) {
		p99[name] = p99Of(t, stub, 2000, 16)
		var total, slow uint64
		for _, s := range balancer.GetServerStats().Servers {
			total += s.Successes
			if s.ID == "server2" {
				slow = s.Successes
			}
		}
		slowShare[name] = float64(slow) / float64(total)
	}
	for _, kind := range []string{lb.RoundRobin, lb.PeakEWMA} {
		balancer := newBalancer(t, config(kind), servers)
		client, err := rpc.NewLoadBalancedClient(balancer, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		measure(kind+" client", balancer, pb.NewPeerVaultServiceClient(client))
		client.Close()
		balancer = newBalancer(t, config(kind), servers)
		measure(kind+" channel", balancer, newChannelTo(t, balancer))
	}
	t.Logf("p99: %v; slow server's share: %v", p99, slowShare)
	for _, path := range []string{"client", "channel"} {
		rr, pe := "round_robin "+path, "peak_ewma "+path
		if slowShare[pe] > 0.1 || p99[pe] >= p99[rr] {
			t.Errorf("%s: peak_ewma gave the slow server %.1f%% (round robin %.1f%%), p99 %v (round robin %v)",
				path, 100*slowShare[pe], 100*slowShare[rr], p99[pe], p99[rr])
		}
	}
}

// A real server failing half its calls with INTERNAL while its health
// checks pass: outlier detection, fed by the calls' outcomes, cuts the
// failed calls to a tenth or less of those without it, through
// LoadBalancedClient and through a pvlb:/// channel.
func TestOutlierDetectionAgainstAFailingRealServer(t *testing.T) {
	servers := testtools.DemoServers(t, 3, demoserver.Config{}, demoserver.Config{ErrorRate: 0.5, Seed: 4}, demoserver.Config{})
	failures := func(balancer *lb.LoadBalancer, stub pb.PeerVaultServiceClient) int {
		failed := 0
		for range 3000 {
			if _, err := stub.GetUserData(context.Background(), &pb.GetUserDataRequest{UserId: "u"}); err != nil {
				failed++
			}
		}
		return failed
	}
	newLB := func(detect bool) *lb.LoadBalancer {
		cfg := lb.DefaultConfig()
		cfg.Service = "peervault"
		if detect {
			od := lb.DefaultOutlierDetection()
			cfg.OutlierDetection = &od
		}
		balancer, err := lb.New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		testtools.AddServers(t, balancer, servers)
		return balancer
	}
	for _, path := range []string{"client", "channel"} {
		var failed [2]int
		for i, detect := range []bool{false, true} {
			balancer := newLB(detect)
			var stub pb.PeerVaultServiceClient
			if path == "client" {
				client, err := rpc.NewLoadBalancedClient(balancer, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer client.Close()
				stub = pb.NewPeerVaultServiceClient(client)
			} else {
				stub = newChannelTo(t, balancer)
			}
			failed[i] = failures(balancer, stub)
			if detect {
				s2 := balancer.GetServerStats().Servers[1]
				if !s2.Ejected || s2.Ejections == 0 {
					t.Errorf("%s: the failing server was not ejected: %+v", path, s2)
				}
			}
		}
		t.Logf("%s: %d failed calls without outlier detection, %d with", path, failed[0], failed[1])
		if failed[1]*10 > failed[0] {
			t.Errorf("%s: %d failed calls with outlier detection, over a tenth of the %d without", path, failed[1], failed[0])
		}
	}
}
