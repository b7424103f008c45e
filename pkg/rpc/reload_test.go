package rpc_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/pkg/demoserver"
	"github.com/peervault/pvlb/pkg/latency"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/policy"
	"github.com/peervault/pvlb/pkg/rpc"
	"github.com/peervault/pvlb/pkg/tlsfiles"
	pb "github.com/peervault/pvlb/proto/peervault/v1"
)

// servedBalancer returns a balancer of service peervault with the default
// configuration, over servers.
func servedBalancer(t *testing.T, servers []*demoserver.Server) *lb.LoadBalancer {
	t.Helper()
	cfg := lb.DefaultConfig()
	cfg.Service = "peervault"
	balancer, err := lb.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	testtools.AddServers(t, balancer, servers)
	return balancer
}

// A balancer reconfigured while it serves changes what both gRPC paths
// do: here picks start reading a sticky session from each call's
// metadata, which neither LoadBalancedClient nor the pvlb:/// channel read
// before.
func TestReconfigureReachesBothPaths(t *testing.T) {
	servers := testtools.DemoServers(t, 3)
	balancer := servedBalancer(t, servers)
	cfg := balancer.Config()
	client := pb.NewPeerVaultServiceClient(testtools.LoadBalancedClient(t, balancer, nil))
	calls, err := rpc.NewChannelCalls(policy.DefaultRetry(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	channel := pb.NewPeerVaultServiceClient(testtools.CallsChannel(t, balancer, calls))
	alice := metadata.AppendToOutgoingContext(context.Background(), "x-user", "alice")
	for name, stub := range map[string]pb.PeerVaultServiceClient{"client": client, "channel": channel} {
		if got := testtools.ServedBy(t, alice, stub, 30); len(got) != 3 {
			t.Fatalf("%s, round robin: alice's calls went to %v, want all three servers", name, got)
		}
	}

	cfg.Sticky = lb.StickyConfig{Enabled: true, TTL: time.Minute, Key: "x-user"}
	if err := balancer.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	if got := testtools.ServedBy(t, alice, client, 30); len(got) != 1 {
		t.Fatalf("client, sticky on x-user: alice's calls went to %v, want one server", got)
	}
	// The channel hears of the change through its resolver.
	testtools.WaitFor(t, "the channel to keep alice on one server", func() bool {
		return len(testtools.ServedBy(t, alice, channel, 30)) == 1
	})
}

// Changing how connections are made drains the open ones: a call in
// flight on the old connection finishes, the next calls dial anew, and
// the old connection closes once nothing holds it.
func TestConnectionSettingsChangeDrainsOpenConnections(t *testing.T) {
	slow := latency.Model{Kind: latency.Fixed, A: 300 * time.Millisecond}
	servers := testtools.DemoServers(t, 1, demoserver.Config{Latency: &slow})
	balancer := servedBalancer(t, servers)
	ccfg := rpc.DefaultLoadBalancedClientConfig()
	pool, err := rpc.NewConnPool(balancer, &ccfg.Client, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pool.Close() })
	lbc := testtools.LoadBalancedClient(t, balancer, ccfg, rpc.WithConnPool(pool))
	stub := pb.NewPeerVaultServiceClient(lbc)
	if _, err := stub.GetUserData(context.Background(), &pb.GetUserDataRequest{UserId: "warm"}); err != nil {
		t.Fatal(err)
	}
	e := balancer.Endpoints()[0]
	old, err := pool.Get(e)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var inFlightErr error
	wg.Go(func() {
		_, inFlightErr = stub.GetUserData(context.Background(), &pb.GetUserDataRequest{UserId: "in flight"})
	})
	testtools.WaitFor(t, "the call to be in flight", func() bool { return e.InFlight() == 1 })

	changed := *ccfg
	changed.UserAgent = "pvlb-reload-test/2"
	changed.MaxRetries = 1
	if err := lbc.Reconfigure(&changed); err != nil {
		t.Fatal(err)
	}
	if err := pool.Reconfigure(&changed.Client); err != nil {
		t.Fatal(err)
	}
	if old.GetState() == connectivity.Shutdown {
		t.Fatal("the old connection closed under the call in flight")
	}
	if _, err := stub.GetUserData(context.Background(), &pb.GetUserDataRequest{UserId: "after"}); err != nil {
		t.Fatalf("a call after the change: %v", err)
	}
	wg.Wait()
	if inFlightErr != nil {
		t.Fatalf("the call in flight across the change failed: %v", inFlightErr)
	}
	if got := lbc.GetStats().MaxRetries; got != 1 {
		t.Fatalf("max_retries %d after the change, want 1", got)
	}
	if cc, _ := pool.Get(e); cc == old {
		t.Fatal("the pool still hands out the connection made with the old settings")
	}
	testtools.WaitFor(t, "the old connection to close", func() bool { return old.GetState() == connectivity.Shutdown })
}

// A configuration the client cannot use changes nothing.
func TestClientReconfigureRefusesAndKeeps(t *testing.T) {
	servers := testtools.DemoServers(t, 1)
	balancer := servedBalancer(t, servers)
	lbc := testtools.LoadBalancedClient(t, balancer, nil)
	bad := rpc.DefaultLoadBalancedClientConfig()
	bad.MaxRetries = 7
	bad.TLS = &tlsfiles.Config{CAFile: "/nonexistent/ca.pem"}
	if err := lbc.Reconfigure(bad); err == nil {
		t.Fatal("a tls block whose CA does not exist was accepted")
	}
	if got := lbc.GetStats().MaxRetries; got == 7 {
		t.Fatal("a refused configuration changed max_retries")
	}
	if _, err := pb.NewPeerVaultServiceClient(lbc).GetUserData(context.Background(), &pb.GetUserDataRequest{UserId: "u"}); err != nil {
		t.Fatal(err)
	}
}
