package grpcpolicy_test

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/pkg/demoserver"
	"github.com/peervault/pvlb/pkg/grpcpolicy"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/statuscode"
	pb "github.com/peervault/pvlb/proto/peervault/v1"
)

// newChannelTo dials "pvlb:///peervault" through the pvlb resolver.
func newChannelTo(t testing.TB, balancer *lb.LoadBalancer) pb.PeerVaultServiceClient {
	t.Helper()
	cc, err := grpc.NewClient("pvlb:///peervault",
		grpc.WithResolvers(grpcpolicy.NewResolverBuilder(balancer)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return pb.NewPeerVaultServiceClient(cc)
}

// newChannel is newChannelTo, warmed up until every server has answered.
func newChannel(t testing.TB, balancer *lb.LoadBalancer, servers int) pb.PeerVaultServiceClient {
	t.Helper()
	stub := newChannelTo(t, balancer)
	seen := map[string]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for len(seen) < servers {
		resp, err := stub.GetUserData(context.Background(), &pb.GetUserDataRequest{UserId: "warmup"})
		if err != nil {
			t.Fatal(err)
		}
		seen[resp.GetServer()] = true
		if time.Now().After(deadline) {
			t.Fatalf("only %v answered within 10s", seen)
		}
	}
	return stub
}

// grpcChannel dials servers through a manual resolver with grpc-go's own
// policy that serviceConfig names, to compare pvlb with.
func grpcChannel(t testing.TB, servers []*demoserver.Server, serviceConfig string) *grpc.ClientConn {
	t.Helper()
	r := manual.NewBuilderWithScheme("grpcgo")
	var addrs []resolver.Address
	for _, s := range servers {
		addrs = append(addrs, resolver.Address{Addr: s.Addr()})
	}
	r.InitialState(resolver.State{Addresses: addrs})
	cc, err := grpc.NewClient("grpcgo:///peervault", grpc.WithResolvers(r),
		grpc.WithDefaultServiceConfig(serviceConfig), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func config(kind string) *lb.LoadBalancerConfig {
	c := lb.DefaultLoadBalancerConfig()
	c.Strategy = kind
	return c
}

func newBalancer(t testing.TB, cfg *lb.LoadBalancerConfig, servers []*demoserver.Server, weights ...int) *lb.LoadBalancer {
	t.Helper()
	cfg.Service = "peervault"
	balancer, err := lb.NewLoadBalancer(cfg, nil, lb.WithSeed(3))
	if err != nil {
		t.Fatal(err)
	}
	testtools.AddServers(t, balancer, servers, weights...)
	return balancer
}

func TestGRPCChannelUsesThePvlbStrategy(t *testing.T) {
	servers := testtools.DemoServers(t, 3)
	balancer := newBalancer(t, config(lb.Weighted), servers, 5, 2, 1)
	stub := newChannel(t, balancer, 3)
	got := testtools.ServedBy(t, context.Background(), stub, 800)
	if got["server1"] != 500 || got["server2"] != 200 || got["server3"] != 100 {
		t.Fatalf("served %v, want 500/200/100", got)
	}
	if n := balancer.GetServerStats().TotalConnections; n != 0 {
		t.Fatalf("%d picks not released by the channel", n)
	}
}

func TestGRPCChannelFollowsHealthAndMembership(t *testing.T) {
	servers := testtools.DemoServers(t, 3)
	balancer := newBalancer(t, config(lb.RoundRobin), servers)
	stub := newChannel(t, balancer, 3)

	// Health set on the LoadBalancer (by a HealthChecker, or by hand)
	// steers the channel at once.
	if err := balancer.SetHealth("server2", lb.HealthUnhealthy); err != nil {
		t.Fatal(err)
	}
	if got := testtools.ServedBy(t, context.Background(), stub, 60); got["server2"] != 0 || got["server1"] != 30 {
		t.Fatalf("with server2 unhealthy: %v", got)
	}
	// A removed endpoint leaves the channel; an added one joins it.
	if err := balancer.RemoveServer("server3"); err != nil {
		t.Fatal(err)
	}
	extra, err := demoserver.Start("127.0.0.1:0", demoserver.Config{Name: "server4"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(extra.Stop)
	host, port := testtools.HostPort(extra.Addr())
	if err := balancer.AddServer("server4", host, port, 1); err != nil {
		t.Fatal(err)
	}
	testtools.WaitFor(t, "server4 to answer", func() bool {
		resp, err := stub.GetUserData(context.Background(), &pb.GetUserDataRequest{UserId: "u"})
		return err == nil && resp.GetServer() == extra.Name()
	})
	if got := testtools.ServedBy(t, context.Background(), stub, 40); got["server1"] != 20 || got["server4"] != 20 {
		t.Fatalf("after membership changes: %v", got)
	}
}

func TestGRPCChannelStickySessions(t *testing.T) {
	servers := testtools.DemoServers(t, 3)
	cfg := config(lb.RoundRobin)
	cfg.StickySession = true
	stub := newChannel(t, newBalancer(t, cfg, servers), 3)
	got := testtools.ServedBy(t, lb.WithSession(context.Background(), "alice"), stub, 30)
	if len(got) != 1 {
		t.Fatalf("one session was served by %v", got)
	}
	// The session id in the metadata sticky_session.key names, as
	// LoadBalancedClient reads it.
	for _, user := range []string{"bob", "carol", "dave"} {
		got := testtools.ServedBy(t, metadata.AppendToOutgoingContext(context.Background(), lb.DefaultSessionKey, user), stub, 30)
		if len(got) != 1 {
			t.Fatalf("session %s in metadata was served by %v", user, got)
		}
	}
}

func TestGRPCResolverUnknownService(t *testing.T) {
	balancer := newBalancer(t, config(lb.RoundRobin), nil)
	cc, err := grpc.NewClient("pvlb:///nope",
		grpc.WithResolvers(grpcpolicy.NewResolverBuilder(balancer)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = pb.NewPeerVaultServiceClient(cc).HealthCheck(ctx, &pb.HealthCheckRequest{})
	if err == nil {
		t.Fatal("a call to an unknown service succeeded")
	}
}

// The pvlb resolver and balancer let generated stubs on a plain
// grpc.ClientConn balance with pvlb's strategies.
func ExampleNewResolverBuilder() {
	var servers []*demoserver.Server
	cfg := lb.DefaultLoadBalancerConfig()
	cfg.Service = "peervault"
	balancer, _ := lb.NewLoadBalancer(cfg, nil)
	for i := range 3 {
		s, _ := demoserver.Start("127.0.0.1:0", demoserver.Config{Name: fmt.Sprintf("server%d", i+1)}, nil)
		defer s.Stop()
		servers = append(servers, s)
		host, port, _ := net.SplitHostPort(s.Addr())
		portNum, _ := strconv.Atoi(port)
		_ = balancer.AddServer(s.Name(), host, portNum, 1)
	}

	cc, err := grpc.NewClient("pvlb:///peervault",
		grpc.WithResolvers(grpcpolicy.NewResolverBuilder(balancer)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	defer cc.Close()
	client := pb.NewPeerVaultServiceClient(cc)

	answered := map[string]bool{}
	for len(answered) < len(servers) {
		resp, err := client.HealthCheck(context.Background(), &pb.HealthCheckRequest{}, grpc.WaitForReady(true))
		if err != nil {
			panic(err)
		}
		answered[resp.GetServer()] = true
	}
	names := make([]string, 0, len(answered))
	for name := range answered {
		names = append(names, name)
	}
	sort.Strings(names)
	fmt.Println(names)
	// Output: [server1 server2 server3]
}

// A retry policy given the grpc-go way, in a service config, takes effect
// on a pvlb:/// channel through NewResolverBuilderWithServiceConfig: with
// every server failing half its calls with UNAVAILABLE, grpc-go's retries
// (up to 5 attempts) leave a few failures where one attempt leaves half.
func TestGRPCChannelRetryPolicy(t *testing.T) {
	flaky := demoserver.Config{ErrorRate: 0.5, ErrorCode: statuscode.Unavailable}
	servers := testtools.DemoServers(t, 3, flaky, flaky, flaky)
	balancer := newBalancer(t, config(lb.RoundRobin), servers)
	builder, err := grpcpolicy.NewResolverBuilderWithServiceConfig(`{
	  "methodConfig": [{
	    "name": [{"service": "peervault.PeerVaultService"}],
	    "retryPolicy": {
	      "maxAttempts": 5, "initialBackoff": "0.001s", "maxBackoff": "0.01s",
	      "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]
	    }
	  }]
	}`, balancer)
	if err != nil {
		t.Fatal(err)
	}
	failures := func(b resolver.Builder) int {
		cc, err := grpc.NewClient("pvlb:///peervault", grpc.WithResolvers(b), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		stub := pb.NewPeerVaultServiceClient(cc)
		n := 0
		for range 200 {
			if _, err := stub.GetUserData(context.Background(), &pb.GetUserDataRequest{UserId: "u"}); err != nil {
				n++
			}
		}
		return n
	}
	with, without := failures(builder), failures(grpcpolicy.NewResolverBuilder(balancer))
	t.Logf("failed calls of 200: %d with the retry policy, %d without", with, without)
	if without < 50 || with*5 > without {
		t.Fatalf("failed calls: %d with the retry policy, %d without; want a fifth or fewer", with, without)
	}
}

// A service config that would replace the pvlb policy, or does not parse,
// fails when the builder is made.
func TestGRPCResolverServiceConfigErrors(t *testing.T) {
	balancer := newBalancer(t, config(lb.RoundRobin), nil)
	for cfg, want := range map[string]string{
		`{"loadBalancingConfig": [{"round_robin": {}}]}`: "chooses another load balancing policy",
		`{"loadBalancingPolicy": "round_robin"}`:         "sets loadBalancingPolicy",
		`{"methodConfig": [`:                             "service config",
		`{"loadBalancingConfig": [{"pvlb": {}}]}`:        "",
	} {
		_, err := grpcpolicy.NewResolverBuilderWithServiceConfig(cfg, balancer)
		if (err == nil) != (want == "") || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: error %v, want %q", cfg, err, want)
		}
	}
}
