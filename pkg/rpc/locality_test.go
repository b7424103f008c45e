package rpc_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/pkg/demoserver"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/policy"
	"github.com/peervault/pvlb/pkg/rpc"
	pb "github.com/peervault/pvlb/proto/peervault/v1"
)

// Six real servers, three in each of two zones, the client in zone a,
// health checked every 50ms, on both gRPC paths: every call stays in a
// while all are healthy; with two of a's three failing their checks, half
// the calls spill over to b (Envoy's formula); with a's last one failing
// too, all go to b; once a's servers pass again, calls are back in a
// within one check interval.
func TestZoneAwareRoutingOverRealServers(t *testing.T) {
	for _, path := range []string{"LoadBalancedClient", "pvlb:/// channel"} {
		t.Run(path, func(t *testing.T) { testZoneAware(t, path) })
	}
}

func testZoneAware(t *testing.T, path string) {
	servers := testtools.DemoServers(t, 6)
	zoneOf := map[string]string{}
	cfg := lb.DefaultConfig()
	cfg.Service = "peervault"
	cfg.Locality = &lb.Locality{Mode: lb.PreferLocal, LocalZone: "a"}
	balancer, err := lb.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range servers {
		zone := "a"
		if i >= 3 {
			zone = "b"
		}
		zoneOf[s.Name()] = zone
		host, port := testtools.HostPort(s.Addr())
		if err := balancer.AddEndpoint(lb.EndpointSpec{ID: s.Name(), Host: host, Port: port, Weight: 1, Zone: zone}); err != nil {
			t.Fatal(err)
		}
	}
	const interval = 50 * time.Millisecond
	pool, err := rpc.NewConnPool(balancer, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pool.Close() })
	health := rpc.NewHealthChecker(interval, interval/2, nil, rpc.WithThresholds(1, 1), rpc.WithHealthService(demoserver.ServiceName))
	if err := health.Start(balancer, pool); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(health.Close)
	var stub pb.PeerVaultServiceClient
	if path == "LoadBalancedClient" {
		stub = pb.NewPeerVaultServiceClient(testtools.LoadBalancedClient(t, balancer, nil, rpc.WithConnPool(pool)))
	} else {
		calls, err := rpc.NewChannelCalls(policy.DefaultRetry(), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		stub = pb.NewPeerVaultServiceClient(testtools.CallsChannel(t, balancer, calls))
	}
	waitHealthy(t, balancer, 6)
	inA := func(n int) float64 {
		t.Helper()
		a := 0
		for server, calls := range testtools.ServedBy(t, context.Background(), stub, n) {
			if zoneOf[server] == "a" {
				a += calls
			}
		}
		return float64(a) / float64(n)
	}
	if got := inA(600); got < 0.99 {
		t.Fatalf("all healthy: %.1f%% of calls stayed in zone a, want at least 99%%", 100*got)
	}
	servers[0].SetServing(false)
	servers[1].SetServing(false)
	waitHealthy(t, balancer, 4)
	spill := inA(2000)
	t.Logf("two of a's three failing: %.1f%% of 2,000 calls stayed in zone a (Envoy's formula: 50%%)", 100*spill)
	if math.Abs(spill-0.5) > 0.02 {
		t.Fatalf("two of a's three failing: %.1f%% of calls in zone a, want 50%% ± 2", 100*spill)
	}
	servers[2].SetServing(false)
	waitHealthy(t, balancer, 3)
	if got := inA(300); got != 0 {
		t.Fatalf("zone a failing: %.1f%% of calls still went there", 100*got)
	}
	for _, s := range servers[:3] {
		s.SetServing(true)
	}
	start := time.Now()
	waitHealthy(t, balancer, 6)
	back := time.Since(start)
	if got := inA(600); got < 0.99 {
		t.Fatalf("zone a back: %.1f%% of calls in zone a", 100*got)
	}
	t.Logf("zone a's servers healthy again %s after they recovered (checks every %s)", back.Round(time.Millisecond), interval)
	if back > 2*interval+100*time.Millisecond {
		t.Errorf("zone a took %s to be healthy again, want within one check interval (%s) and some scheduling", back, interval)
	}
}
