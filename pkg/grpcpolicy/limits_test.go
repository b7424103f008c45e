package grpcpolicy_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/pkg/demoserver"
	"github.com/peervault/pvlb/pkg/latency"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/policy"
	"github.com/peervault/pvlb/pkg/rpc"
	pb "github.com/peervault/pvlb/proto/peervault/v1"
)

func limitedBalancer(t *testing.T, servers []*demoserver.Server, cb *lb.CircuitBreakers, rl *lb.RateLimit) *lb.LoadBalancer {
	t.Helper()
	cfg := lb.DefaultConfig()
	cfg.Service, cfg.Strategy.Kind, cfg.CircuitBreakers, cfg.RateLimit = "peervault", lb.LeastConnections, cb, rl
	balancer, err := lb.New(cfg, nil, lb.WithSeed(3))
	if err != nil {
		t.Fatal(err)
	}
	testtools.AddServers(t, balancer, servers)
	return balancer
}

// stubOn returns a stub over balancer on one live path: "client", a
// LoadBalancedClient; "channel", a pvlb:/// channel, warmed up until ready
// servers have answered; "channel calls", a channel whose unary calls
// rpc.ChannelCalls runs (without retries: each call is one attempt).
func stubOn(t *testing.T, path string, balancer *lb.LoadBalancer, ready int) pb.PeerVaultServiceClient {
	t.Helper()
	switch path {
	case "client":
		client := testtools.LoadBalancedClient(t, balancer, nil)
		return pb.NewPeerVaultServiceClient(client)
	case "channel":
		return newChannel(t, balancer, ready)
	}
	calls, err := rpc.NewChannelCalls(policy.Retry{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cc := testtools.CallsChannel(t, balancer, calls)
	return pb.NewPeerVaultServiceClient(cc)
}

// hammer sends calls from 64 callers for the given time and counts the
// calls that succeeded and those refused with RESOURCE_EXHAUSTED.
func hammer(t *testing.T, stub pb.PeerVaultServiceClient, d time.Duration) (ok, refused int) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	stop := time.Now().Add(d)
	for range 64 {
		wg.Go(func() {
			for time.Now().Before(stop) {
				_, err := stub.GetUserData(context.Background(), &pb.GetUserDataRequest{UserId: "u"})
				mu.Lock()
				switch status.Code(err) {
				case codes.OK:
					ok++
				case codes.ResourceExhausted:
					refused++
				default:
					t.Errorf("call failed: %v", err)
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(time.Millisecond) // a refused caller backs off, as a real one would
				}
			}
		})
	}
	wg.Wait()
	return ok, refused
}

// No endpoint with max_requests_per_endpoint = 4 answers more than 4 calls
// at once under 64 callers, on both live paths; the calls that find every
// endpoint full fail at once with RESOURCE_EXHAUSTED.
func TestCircuitBreakerOnRealServers(t *testing.T) {
	slow := latency.Model{Kind: latency.Fixed, A: 5 * time.Millisecond}
	for _, path := range []string{"client", "channel"} {
		t.Run(path, func(t *testing.T) {
			servers := testtools.DemoServers(t, 3, demoserver.Config{Latency: &slow}, demoserver.Config{Latency: &slow}, demoserver.Config{Latency: &slow})
			balancer := limitedBalancer(t, servers, &lb.CircuitBreakers{MaxRequestsPerEndpoint: 4}, nil)
			stub := stubOn(t, path, balancer, 3)
			ok, refused := hammer(t, stub, time.Second)
			for _, s := range servers {
				if p := s.PeakInFlight(); p > 4 {
					t.Errorf("%s answered %d calls at once, over the cap of 4", s.Addr(), p)
				}
			}
			c := balancer.Limited()
			t.Logf("%d calls answered, %d refused at once; peaks %d/%d/%d; counts %+v", ok, refused,
				servers[0].PeakInFlight(), servers[1].PeakInFlight(), servers[2].PeakInFlight(), *c)
			if refused == 0 || c.Overloaded == 0 {
				t.Error("64 callers against 12 places: some calls should have been refused")
			}
		})
	}
}

// A rate limit of 100 a second per endpoint holds within 5% (plus its
// burst) over 2 s of 64 callers, on both live paths.
func TestRateLimitOnRealServers(t *testing.T) {
	for _, path := range []string{"client", "channel"} {
		t.Run(path, func(t *testing.T) {
			servers := testtools.DemoServers(t, 1)
			balancer := limitedBalancer(t, servers, nil, &lb.RateLimit{RequestsPerSecond: 100})
			stub := stubOn(t, path, balancer, 1)
			before := servers[0].Calls()
			start := time.Now()
			ok, refused := hammer(t, stub, 2*time.Second)
			elapsed := time.Since(start).Seconds()
			served := servers[0].Calls() - before
			want := 100*elapsed + float64(lb.DefaultBurst(100))
			t.Logf("%d calls served in %.2fs (%d ok, %d refused); at most %.0f allowed", served, elapsed, ok, refused, want)
			if float64(served) > want*1.05 || float64(served) < 100*elapsed*0.95 {
				t.Errorf("%d calls in %.2fs at 100 a second", served, elapsed)
			}
		})
	}
}

// blackHole accepts connections and never answers, so that a gRPC
// connection to it stays CONNECTING; it returns its address.
func blackHole(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return lis.Addr().String()
}

// max_pending bounds the calls waiting for a connection, on both paths:
// with a cap of 2 and an endpoint that never finishes connecting, of 6
// calls 2 wait (until their deadline) and 4 fail at once.
func TestMaxPendingOnBothPaths(t *testing.T) {
	for _, path := range []string{"client", "channel calls"} {
		t.Run(path, func(t *testing.T) {
			cfg := lb.DefaultConfig()
			cfg.Service, cfg.CircuitBreakers = "peervault", &lb.CircuitBreakers{MaxPending: 2}
			balancer, err := lb.New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			host, port := testtools.HostPort(blackHole(t))
			if err := balancer.AddServer("hole", host, port, 1); err != nil {
				t.Fatal(err)
			}
			stub := stubOn(t, path, balancer, 0)
			var wg sync.WaitGroup
			var mu sync.Mutex
			codesSeen := map[codes.Code]int{}
			for range 6 {
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
					defer cancel()
					_, err := stub.GetUserData(ctx, &pb.GetUserDataRequest{UserId: "u"})
					mu.Lock()
					codesSeen[status.Code(err)]++
					mu.Unlock()
				})
			}
			wg.Wait()
			t.Logf("%v", codesSeen)
			if codesSeen[codes.ResourceExhausted] != 4 || codesSeen[codes.DeadlineExceeded] != 2 {
				t.Errorf("codes %v: want 4 refused at once and 2 waiting until their deadline", codesSeen)
			}
		})
	}
}
