package lb_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/peervault/pvlb/pkg/lb"
)

// A weighted balancer over PeerVault's primary, secondary and backup
// servers: 800 picks split exactly 5/2/1.
func ExampleLoadBalancer() {
	cfg := lb.DefaultLoadBalancerConfig()
	cfg.Service = "peervault"
	cfg.Strategy = lb.Weighted
	balancer, err := lb.NewLoadBalancer(cfg, nil)
	if err != nil {
		panic(err)
	}
	_ = balancer.AddServer("primary", "primary.example.com", 50051, 5)
	_ = balancer.AddServer("secondary", "secondary.example.com", 50051, 2)
	_ = balancer.AddServer("backup", "backup.example.com", 50051, 1)

	for range 800 {
		ep, err := balancer.Pick(context.Background())
		if err != nil {
			panic(err)
		}
		// ... call ep.Address ...
		balancer.Release(ep)
	}
	for _, s := range balancer.GetServerStats().Servers {
		fmt.Println(s.ID, s.TotalRequests)
	}
	// Output:
	// backup 100
	// primary 500
	// secondary 200
}

// Sticky sessions keep a session on one server until it fails.
func ExampleWithSession() {
	cfg := lb.DefaultLoadBalancerConfig()
	cfg.StickySession = true
	balancer, _ := lb.NewLoadBalancer(cfg, nil)
	_ = balancer.AddServer("server1", "127.0.0.1", 50051, 1)
	_ = balancer.AddServer("server2", "127.0.0.1", 50052, 1)

	ctx := lb.WithSession(context.Background(), "user123")
	first, _ := balancer.Pick(ctx)
	balancer.Release(first)
	again, _ := balancer.Pick(ctx)
	balancer.Release(again)
	fmt.Println("same server:", first == again)

	_ = balancer.SetHealth(first.ID, lb.HealthUnhealthy)
	moved, _ := balancer.Pick(ctx)
	balancer.Release(moved)
	fmt.Println("moved:", moved != first)
	// Output:
	// same server: true
	// moved: true
}

// With every server unhealthy, a pick fails with ErrNoHealthyServers.
func ExampleErrNoHealthyServers() {
	cfg := lb.DefaultLoadBalancerConfig()
	cfg.Service = "peervault"
	balancer, _ := lb.NewLoadBalancer(cfg, nil)
	_ = balancer.AddServer("server1", "127.0.0.1", 50051, 1)
	_ = balancer.SetHealth("server1", lb.HealthUnhealthy)

	_, err := balancer.Pick(context.Background())
	fmt.Println(errors.Is(err, lb.ErrNoHealthyServers))
	fmt.Println(err)
	// Output:
	// true
	// no healthy servers for service "peervault" (its only endpoint is unhealthy)
}
