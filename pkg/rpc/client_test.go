package rpc_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/pkg/demoserver"
	"github.com/peervault/pvlb/pkg/latency"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/rpc"
	pb "github.com/peervault/pvlb/proto/peervault/v1"
)

type fixture struct {
	balancer *lb.LoadBalancer
	pool     *rpc.ConnPool
	health   *rpc.HealthChecker
	client   *rpc.LoadBalancedClient
	stub     pb.PeerVaultServiceClient
}

// newFixture balances over servers with the given weights; health checks
// run when interval > 0.
func newFixture(t testing.TB, cfg *lb.LoadBalancerConfig, servers []*demoserver.Server, weights []int, interval time.Duration) *fixture {
	t.Helper()
	cfg.Service = "peervault"
	balancer, err := lb.NewLoadBalancer(cfg, nil, lb.WithSeed(1))
	if err != nil {
		t.Fatal(err)
	}
	testtools.AddServers(t, balancer, servers, weights...)
	ccfg := rpc.DefaultLoadBalancedClientConfig()
	ccfg.MaxRetries = cfg.MaxRetries
	ccfg.Delay = cfg.RetryDelay
	ccfg.FailoverTimeout = cfg.FailoverTimeout
	// Reconnect quickly, so a restarted server is seen within the test.
	pool, err := rpc.NewConnPool(balancer, &ccfg.Client, nil, grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoffQuick,
		MinConnectTimeout: time.Second,
	}))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{balancer: balancer, pool: pool}
	if interval > 0 {
		f.health = rpc.NewHealthChecker(interval, interval/2, nil, rpc.WithThresholds(cfg.UnhealthyThreshold, cfg.HealthyThreshold), rpc.WithHealthService(demoserver.ServiceName))
		if err := f.health.Start(balancer, pool); err != nil {
			t.Fatal(err)
		}
	}
	f.client, err = rpc.NewLoadBalancedClient(balancer, ccfg, nil, rpc.WithConnPool(pool))
	if err != nil {
		t.Fatal(err)
	}
	f.stub = pb.NewPeerVaultServiceClient(f.client)
	t.Cleanup(f.close)
	return f
}

func (f *fixture) close() {
	_ = f.client.Close()
	if f.health != nil {
		f.health.Close()
	}
	_ = f.pool.Close()
}

func config(kind string) *lb.LoadBalancerConfig {
	c := lb.DefaultLoadBalancerConfig()
	c.Strategy = kind
	c.RetryDelay = 5 * time.Millisecond
	c.FailoverTimeout = 5 * time.Second
	return c
}

func TestRoundRobinOverRealServers(t *testing.T) {
	f := newFixture(t, config(lb.RoundRobin), testtools.DemoServers(t, 3), nil, 0)
	got := testtools.ServedBy(t, context.Background(), f.stub, 300)
	for _, name := range []string{"server1", "server2", "server3"} {
		if got[name] != 100 {
			t.Fatalf("served %v, want 100 each", got)
		}
	}
	st := f.client.GetStats()
	if st.Calls != 300 || st.Retries != 0 || st.TotalConnections != 3 || st.LoadBalancer.TotalServers != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestWeightedOverRealServers(t *testing.T) {
	f := newFixture(t, config(lb.Weighted), testtools.DemoServers(t, 3), []int{5, 2, 1}, 0)
	got := testtools.ServedBy(t, context.Background(), f.stub, 800)
	if got["server1"] != 500 || got["server2"] != 200 || got["server3"] != 100 {
		t.Fatalf("served %v, want 500/200/100", got)
	}
}

func TestStreamsThroughTheClient(t *testing.T) {
	f := newFixture(t, config(lb.RoundRobin), testtools.DemoServers(t, 2), nil, 0)
	seen := map[string]int{}
	for range 4 {
		stream, err := f.stub.WatchUserEvents(context.Background(), &pb.WatchUserEventsRequest{UserId: "u1", Count: 5})
		if err != nil {
			t.Fatal(err)
		}
		n, server := 0, ""
		for {
			ev, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			n++
			if server != "" && ev.GetServer() != server {
				t.Fatalf("one stream answered by %s and %s", server, ev.GetServer())
			}
			server = ev.GetServer()
		}
		if n != 5 {
			t.Fatalf("got %d events, want 5", n)
		}
		seen[server]++
	}
	if seen["server1"] != 2 || seen["server2"] != 2 {
		t.Fatalf("streams went to %v, want 2 each", seen)
	}
	if n := f.balancer.GetServerStats().TotalConnections; n != 0 {
		t.Fatalf("%d calls still counted in flight after the streams ended", n)
	}
}

func TestStickySessionOverRealServersMovesWhenItsServerDies(t *testing.T) {
	cfg := config(lb.RoundRobin)
	cfg.StickySession = true
	servers := testtools.DemoServers(t, 3)
	f := newFixture(t, cfg, servers, nil, 50*time.Millisecond)
	waitHealthy(t, f.balancer, 3)

	ctx := lb.WithSession(context.Background(), "user123")
	first := testtools.ServedBy(t, ctx, f.stub, 30)
	if len(first) != 1 {
		t.Fatalf("session spread over %v", first)
	}
	var home string
	for name := range first {
		home = name
	}
	// The metadata key carries a session too.
	mdCtx := metadata.AppendToOutgoingContext(context.Background(), "session-id", "user456")
	if got := testtools.ServedBy(t, mdCtx, f.stub, 30); len(got) != 1 {
		t.Fatalf("metadata session spread over %v", got)
	}

	for _, s := range servers {
		if s.Name() == home {
			s.Stop()
		}
	}
	moved := testtools.ServedBy(t, ctx, f.stub, 30)
	if len(moved) != 1 || moved[home] != 0 {
		t.Fatalf("after %s died the session went to %v, want one other server", home, moved)
	}
}

func TestNonRetryableErrorsAreNotRetried(t *testing.T) {
	f := newFixture(t, config(lb.RoundRobin), testtools.DemoServers(t, 3), nil, 0)
	report := &rpc.CallReport{}
	_, err := f.stub.GetUserData(context.Background(), &pb.GetUserDataRequest{UserId: "missing-1"}, report)
	if status.Code(err) != codes.NotFound {
		t.Fatalf("err = %v, want NotFound", err)
	}
	if len(report.Attempts) != 1 {
		t.Fatalf("NotFound was tried %d times", len(report.Attempts))
	}
}

func TestRetriesMoveToADifferentServer(t *testing.T) {
	servers := testtools.DemoServers(t, 2)
	// A third endpoint whose port refuses connections; no health checker,
	// so the balancer keeps offering it and only retries save the calls.
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := lis.Addr().String()
	lis.Close()
	f := newFixture(t, config(lb.RoundRobin), servers, nil, 0)
	host, port := testtools.HostPort(dead)
	if err := f.balancer.AddServer("dead", host, port, 1); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		report := &rpc.CallReport{}
		resp, err := f.stub.GetUserData(context.Background(), &pb.GetUserDataRequest{UserId: "u"}, report)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		last := report.Attempts[len(report.Attempts)-1]
		if last.Server != resp.GetServer() || last.Err != nil {
			t.Fatalf("report %+v does not end with the answering server %s", report.Attempts, resp.GetServer())
		}
		for _, a := range report.Attempts[:len(report.Attempts)-1] {
			if a.Server != "dead" || status.Code(a.Err) != codes.Unavailable {
				t.Fatalf("unexpected failed attempt %+v", a)
			}
		}
	}
	// Streams open on another server too.
	for range 6 {
		stream, err := f.stub.WatchUserEvents(context.Background(), &pb.WatchUserEventsRequest{UserId: "u", Count: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("stream: %v", err)
		}
	}
}

func TestEveryServerDownFailsWithUnavailable(t *testing.T) {
	servers := testtools.DemoServers(t, 2)
	cfg := config(lb.RoundRobin)
	f := newFixture(t, cfg, servers, nil, 0)
	for _, s := range servers {
		_ = f.balancer.SetHealth(s.Name(), lb.HealthUnhealthy)
	}
	report := &rpc.CallReport{}
	_, err := f.stub.HealthCheck(context.Background(), &pb.HealthCheckRequest{}, report)
	if status.Code(err) != codes.Unavailable || !errors.Is(err, lb.ErrNoHealthyServers) {
		t.Fatalf("err = %v, want UNAVAILABLE wrapping lb.ErrNoHealthyServers", err)
	}
	if st := f.client.GetStats(); st.Failures != 1 || st.Retries != uint64(cfg.MaxRetries) {
		t.Fatalf("stats %+v, want 1 failure after %d retries", st, cfg.MaxRetries)
	}
}

func TestHealthCheckerThresholdsAndForce(t *testing.T) {
	servers := testtools.DemoServers(t, 2)
	cfg := config(lb.RoundRobin)
	cfg.UnhealthyThreshold, cfg.HealthyThreshold = 2, 3
	f := newFixture(t, cfg, servers, nil, time.Hour) // checks run only when forced, after the first
	waitHealthy(t, f.balancer, 2)

	servers[1].SetServing(false)
	if st, _ := f.health.ForceHealthCheck(context.Background(), "server2"); st != lb.HealthHealthy {
		t.Fatalf("one failure made it %v, want still healthy (threshold 2)", st)
	}
	if st, _ := f.health.ForceHealthCheck(context.Background(), "server2"); st != lb.HealthUnhealthy {
		t.Fatalf("two failures left it %v", st)
	}
	got := testtools.ServedBy(t, context.Background(), f.stub, 20)
	if got["server2"] != 0 {
		t.Fatalf("unhealthy server2 served %d calls", got["server2"])
	}
	servers[1].SetServing(true)
	for i := 1; i <= 3; i++ {
		f.health.ForceHealthCheckAll(context.Background())
		want := lb.HealthUnhealthy
		if i == 3 {
			want = lb.HealthHealthy
		}
		if e, _ := f.balancer.Endpoint("server2"); e.Health() != want {
			t.Fatalf("after %d passes server2 is %v, want %v", i, e.Health(), want)
		}
	}
	stats := f.health.GetHealthStats()
	if stats.TotalServers != 2 || stats.HealthyServers != 2 || stats.CheckInterval != "1h0m0s" || stats.Servers[1].ConsecutiveSuccesses != 3 {
		t.Fatalf("health stats %+v", stats)
	}
	if _, err := f.health.ForceHealthCheck(context.Background(), "nope"); !errors.Is(err, lb.ErrUnknownServer) {
		t.Fatalf("force of an unknown server: %v", err)
	}
}

// TestFailoverUnderLoad: a steady stream of 2,000 calls from 8 goroutines
// over 3 servers; one server is stopped in the middle. No call may fail,
// the stopped server takes no pick once it is marked unhealthy, and it
// rejoins after it is back and passes healthy_threshold checks.
func TestFailoverUnderLoad(t *testing.T) {
	servers := testtools.DemoServers(t, 3)
	cfg := config(lb.RoundRobin)
	cfg.UnhealthyThreshold, cfg.HealthyThreshold = 2, 2
	f := newFixture(t, cfg, servers, nil, 50*time.Millisecond)
	waitHealthy(t, f.balancer, 3)
	victim := servers[1]
	addr := victim.Addr()
	ep, _ := f.balancer.Endpoint(victim.Name())

	const total, workers = 2000, 8
	var sent, failed atomic.Int64
	var picksAtUnhealthy atomic.Int64
	picksAtUnhealthy.Store(-1)
	var wg sync.WaitGroup
	stopped := make(chan struct{})
	for range workers {
		wg.Go(func() {
			for sent.Add(1) <= total {
				if _, err := f.stub.GetUserData(context.Background(), &pb.GetUserDataRequest{UserId: "u"}); err != nil {
					failed.Add(1)
					t.Errorf("call failed: %v", err)
				}
			}
		})
	}
	// Stop the victim a third of the way in.
	testtools.WaitFor(t, "a third of the calls", func() bool { return sent.Load() > total/3 })
	victim.Stop()
	close(stopped)
	testtools.WaitFor(t, "the victim to be marked unhealthy", func() bool { return ep.Health() == lb.HealthUnhealthy })
	picksAtUnhealthy.Store(int64(ep.Requests()))
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d calls failed", failed.Load(), total)
	}
	if after := int64(ep.Requests()); after != picksAtUnhealthy.Load() {
		t.Fatalf("the stopped server was picked %d times after it was marked unhealthy", after-picksAtUnhealthy.Load())
	}

	// Bring it back on the same address: it rejoins after passing checks.
	back, err := demoserver.Start(addr, demoserver.Config{Name: victim.Name()}, nil)
	if err != nil {
		t.Fatalf("restart on %s: %v", addr, err)
	}
	t.Cleanup(back.Stop)
	testtools.WaitFor(t, "the victim to rejoin", func() bool { return ep.Health() == lb.HealthHealthy })
	got := testtools.ServedBy(t, context.Background(), f.stub, 30)
	if got[victim.Name()] != 10 {
		t.Fatalf("after rejoining, served %v; want 10 each", got)
	}
	f.close()
	for _, s := range servers {
		s.Stop()
	}
	back.Stop()
}

func waitHealthy(t *testing.T, b *lb.LoadBalancer, n int) {
	t.Helper()
	testtools.WaitFor(t, fmt.Sprintf("%d healthy servers", n), func() bool { return b.GetServerStats().HealthyServers == n })
}

func TestMessageSizeLimitsApply(t *testing.T) {
	servers := testtools.DemoServers(t, 1)
	balancer, _ := lb.NewLoadBalancer(nil, nil)
	host, port := testtools.HostPort(servers[0].Addr())
	_ = balancer.AddServer("server1", host, port, 1)
	cfg := rpc.DefaultLoadBalancedClientConfig()
	cfg.MaxSendSize = 64
	client, err := rpc.NewLoadBalancedClient(balancer, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	stub := pb.NewPeerVaultServiceClient(client)
	big := make([]byte, 200)
	for i := range big {
		big[i] = 'x'
	}
	_, err = stub.GetUserData(context.Background(), &pb.GetUserDataRequest{UserId: string(big)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a 200-byte request with max_send_size 64: %v, want RESOURCE_EXHAUSTED", err)
	}
	if _, err := stub.GetUserData(context.Background(), &pb.GetUserDataRequest{UserId: "u1"}); err != nil {
		t.Fatalf("a small request: %v", err)
	}
}

func TestUserAgentReachesTheServer(t *testing.T) {
	agents := make(chan string, 1)
	srv, err := demoserver.Start("127.0.0.1:0", demoserver.Config{Name: "ua"}, nil, grpc.UnaryInterceptor(
		func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			md, _ := metadata.FromIncomingContext(ctx)
			select {
			case agents <- strings.Join(md.Get("user-agent"), ","):
			default:
			}
			return handler(ctx, req)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	balancer, _ := lb.NewLoadBalancer(nil, nil)
	host, port := testtools.HostPort(srv.Addr())
	_ = balancer.AddServer("ua", host, port, 1)
	cfg := rpc.DefaultLoadBalancedClientConfig()
	cfg.UserAgent = "pvlb-test/2.0"
	client, err := rpc.NewLoadBalancedClient(balancer, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := pb.NewPeerVaultServiceClient(client).HealthCheck(context.Background(), &pb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if ua := <-agents; !strings.HasPrefix(ua, "pvlb-test/2.0 grpc-go/") {
		t.Fatalf("user agent %q", ua)
	}
}

// A connection in TRANSIENT_FAILURE makes its endpoint unhealthy at once,
// long before the next periodic check.
func TestTransientFailureIsUnhealthyAtOnce(t *testing.T) {
	servers := testtools.DemoServers(t, 2)
	f := newFixture(t, config(lb.RoundRobin), servers, nil, time.Hour)
	waitHealthy(t, f.balancer, 2)
	servers[0].Stop()
	ep, _ := f.balancer.Endpoint(servers[0].Name())
	testtools.WaitFor(t, "the stopped server to be marked unhealthy without a check", func() bool { return ep.Health() == lb.HealthUnhealthy })
	st := f.health.GetHealthStats()
	if st.Servers[0].Error == "" {
		t.Fatalf("no reason recorded: %+v", st.Servers[0])
	}
}

// Removing an endpoint lets its calls in flight finish: the connection
// drains before it closes.
func TestRemovedEndpointDrains(t *testing.T) {
	slow := latency.Model{Kind: latency.Fixed, A: 300 * time.Millisecond}
	srv, err := demoserver.Start("127.0.0.1:0", demoserver.Config{Name: "slow", Latency: &slow}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	f := newFixture(t, config(lb.RoundRobin), []*demoserver.Server{srv}, nil, 0)
	errc := make(chan error, 1)
	go func() {
		_, err := f.stub.GetUserData(context.Background(), &pb.GetUserDataRequest{UserId: "u"})
		errc <- err
	}()
	ep, _ := f.balancer.Endpoint("slow")
	testtools.WaitFor(t, "the call to be in flight", func() bool { return ep.InFlight() == 1 })
	if err := f.balancer.RemoveServer("slow"); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("a call in flight on a removed endpoint failed: %v", err)
	}
}
