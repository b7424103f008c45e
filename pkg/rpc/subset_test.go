package rpc_test

import (
	"context"
	"testing"
	"time"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/pkg/demoserver"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/rpc"
	pb "github.com/peervault/pvlb/proto/peervault/v1"
)

// A client with a subset connects to, checks and calls only its subset of
// twelve real servers: the other servers see neither a call nor a
// connection from it.
func TestSubsetOverRealServers(t *testing.T) {
	servers := testtools.DemoServers(t, 12)
	index := 1
	cfg := lb.DefaultConfig()
	cfg.Service = "peervault"
	cfg.Subset = &lb.SubsetConfig{Size: 4, ClientIndex: &index}
	balancer, err := lb.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var specs []lb.EndpointSpec
	for _, s := range servers {
		host, port := testtools.HostPort(s.Addr())
		specs = append(specs, lb.EndpointSpec{ID: s.Name(), Host: host, Port: port, Weight: 1})
	}
	if err := balancer.Sync(specs); err != nil {
		t.Fatal(err)
	}
	mine := map[string]bool{}
	for _, e := range balancer.Endpoints() {
		mine[e.ID] = true
	}
	if len(mine) == 0 || len(mine) == len(servers) {
		t.Fatalf("a subset of %d of %d servers", len(mine), len(servers))
	}
	pool, err := rpc.NewConnPool(balancer, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pool.Close() })
	health := rpc.NewHealthChecker(50*time.Millisecond, 25*time.Millisecond, nil, rpc.WithHealthService(demoserver.ServiceName))
	if err := health.Start(balancer, pool); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(health.Close)
	stub := pb.NewPeerVaultServiceClient(testtools.LoadBalancedClient(t, balancer, nil, rpc.WithConnPool(pool)))
	served := testtools.ServedBy(t, context.Background(), stub, 200)
	for name := range served {
		if !mine[name] {
			t.Fatalf("%s answered a call but is not in the subset %v", name, mine)
		}
	}
	if got := len(health.GetHealthStats().Servers); got != len(mine) {
		t.Fatalf("%d servers checked, want the subset's %d", got, len(mine))
	}
	if got := pool.Len(); got != len(mine) {
		t.Fatalf("%d connections, want the subset's %d", got, len(mine))
	}
	t.Logf("client 1 of a fleet, subsets of 4 on average: %d of 12 servers, calls %v", len(mine), served)
}
