package grpcpolicy_test

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	_ "google.golang.org/grpc/balancer/weightedroundrobin" // grpc-go's, to compare with

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/pkg/demoserver"
	"github.com/peervault/pvlb/pkg/latency"
	"github.com/peervault/pvlb/pkg/lb"
	pb "github.com/peervault/pvlb/proto/peervault/v1"
)

// loadServers starts three demo servers of capacities 100, 200 and 400
// calls a second, each answering in 4ms and reporting its load (ORCA).
func loadServers(t *testing.T) []*demoserver.Server {
	four := latency.Model{Kind: latency.Fixed, A: 4 * time.Millisecond}
	var cfgs []demoserver.Config
	for _, capacity := range []float64{100, 200, 400} {
		cfgs = append(cfgs, demoserver.Config{Latency: &four, Capacity: capacity})
	}
	return testtools.DemoServers(t, 3, cfgs...)
}

// steadyShares sends calls from 6 goroutines for warmup, then counts
// which server answers for measure, and returns each server's share.
func steadyShares(t *testing.T, stub pb.PeerVaultServiceClient, warmup, measure time.Duration) []float64 {
	t.Helper()
	var mu sync.Mutex
	counts := map[string]int{}
	counting := false
	start := time.Now()
	var wg sync.WaitGroup
	var failed error
	for range 6 {
		wg.Go(func() {
			for time.Since(start) < warmup+measure {
				resp, err := stub.GetUserData(context.Background(), &pb.GetUserDataRequest{UserId: "u"})
				mu.Lock()
				if err != nil && failed == nil {
					failed = err
				}
				if counting = time.Since(start) >= warmup; counting && err == nil {
					counts[resp.GetServer()]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if failed != nil {
		t.Fatal(failed)
	}
	total := 0
	for _, n := range counts {
		total += n
	}
	out := make([]float64, 3)
	for i := range out {
		out[i] = float64(counts[fmt.Sprintf("server%d", i+1)]) / float64(total)
	}
	return out
}

// Three servers of capacities 1:2:4 report their load; once their reports
// count (after the blackout period), weighted_round_robin gives them 1/7,
// 2/7 and 4/7 of the calls, through a pvlb:/// channel and through
// LoadBalancedClient, within 10% of each share, and within 5 points of
// what grpc-go's own weighted_round_robin does on the same servers.
func TestWeightedRoundRobinFromRealLoadReports(t *testing.T) {
	servers := loadServers(t)
	const blackout, update = time.Second, 100 * time.Millisecond
	warmup, measure := blackout+time.Second, 2*time.Second
	want := []float64{1.0 / 7, 2.0 / 7, 4.0 / 7}

	newBalancer := func() *lb.LoadBalancer {
		b, err := lb.New(lb.Config{Service: "peervault", Strategy: lb.StrategyConfig{Kind: lb.WeightedRoundRobin,
			WeightedRoundRobin: &lb.WeightedRoundRobinConfig{BlackoutPeriod: blackout, WeightUpdatePeriod: update}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		testtools.AddServers(t, b, servers)
		return b
	}
	client := testtools.LoadBalancedClient(t, newBalancer(), nil)

	sc := fmt.Sprintf(`{"loadBalancingConfig": [{"weighted_round_robin": {"blackoutPeriod": "%gs", "weightUpdatePeriod": "%gs"}}]}`, blackout.Seconds(), update.Seconds())
	cc := grpcChannel(t, servers, sc)

	got := map[string][]float64{}
	for _, path := range []struct {
		name string
		stub pb.PeerVaultServiceClient
	}{
		{"grpc-go weighted_round_robin", pb.NewPeerVaultServiceClient(cc)},
		{"pvlb:/// channel", newChannelTo(t, newBalancer())},
		{"LoadBalancedClient", pb.NewPeerVaultServiceClient(client)},
	} {
		shares := steadyShares(t, path.stub, warmup, measure)
		got[path.name] = shares
		t.Logf("%s: shares %.3f %.3f %.3f (want %.3f %.3f %.3f)", path.name, shares[0], shares[1], shares[2], want[0], want[1], want[2])
		for i := range want {
			if math.Abs(shares[i]-want[i]) > 0.1*want[i] {
				t.Errorf("%s: server%d's share %.3f, want %.3f within 10%%", path.name, i+1, shares[i], want[i])
			}
		}
	}
	for _, name := range []string{"pvlb:/// channel", "LoadBalancedClient"} {
		for i := range want {
			if d := math.Abs(got[name][i] - got["grpc-go weighted_round_robin"][i]); d > 0.05 {
				t.Errorf("%s: server%d's share %.3f, grpc-go's %.3f: %.1f points apart", name, i+1, got[name][i], got["grpc-go weighted_round_robin"][i], 100*d)
			}
		}
	}
}

// With enable_oob_load_report, a pvlb:/// channel takes the servers' load
// from ORCA's out-of-band stream (grpc-go's orca.RegisterOOBListener on
// each subchannel) instead of calls' trailers. The demo servers' service
// (grpc-go's orca.Register) sends a report when the stream opens and then
// every 30 seconds at most, so the servers are kept busy by another
// channel from the start, and the first report carries their load.
func TestWeightedRoundRobinFromOutOfBandReports(t *testing.T) {
	servers := loadServers(t)
	busy := grpcChannel(t, servers, `{"loadBalancingConfig": [{"round_robin": {}}]}`)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	busyStub := pb.NewPeerVaultServiceClient(busy)
	for range 3 {
		wg.Go(func() {
			for ctx.Err() == nil {
				_, _ = busyStub.GetUserData(ctx, &pb.GetUserDataRequest{UserId: "busy"})
			}
		})
	}
	// A second of load, so that the servers' first reports measure it.
	testtools.WaitFor(t, "the servers to be busy", func() bool {
		for _, s := range servers {
			if s.Calls() < 100 {
				return false
			}
		}
		return true
	})
	zero := time.Duration(0)
	b, err := lb.New(lb.Config{Service: "peervault", Strategy: lb.StrategyConfig{Kind: lb.WeightedRoundRobin,
		WeightedRoundRobin: &lb.WeightedRoundRobinConfig{BlackoutPeriod: zero, WeightUpdatePeriod: 100 * time.Millisecond,
			EnableOOBLoadReport: true, OOBReportingPeriod: time.Second}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	testtools.AddServers(t, b, servers)
	client := testtools.LoadBalancedClient(t, b, nil)
	for _, path := range []struct {
		name string
		stub pb.PeerVaultServiceClient
	}{
		{"pvlb:/// channel", newChannelTo(t, b)},
		{"LoadBalancedClient", pb.NewPeerVaultServiceClient(client)},
	} {
		shares := steadyShares(t, path.stub, time.Second, 2*time.Second)
		t.Logf("%s, out of band: shares %.3f %.3f %.3f", path.name, shares[0], shares[1], shares[2])
		for i, want := range []float64{1.0 / 7, 2.0 / 7, 4.0 / 7} {
			if math.Abs(shares[i]-want) > 0.1*want {
				t.Errorf("%s: server%d's share %.3f, want %.3f within 10%%", path.name, i+1, shares[i], want)
			}
		}
	}
}
