package lb

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkPick measures one Pick+Release per strategy at 3 and 1,000
// endpoints, serially and from all cores. Weights cycle 1..5 so the weighted
// schedule is non-trivial.
func BenchmarkPick(b *testing.B) {
	type variant struct {
		name    string
		kind    string
		choices int
	}
	variants := []variant{
		{"round_robin", RoundRobin, 0},
		{"random", Random, 0},
		{"weighted", Weighted, 0},
		{"least_connections", LeastConnections, 0},
		{"least_connections_p2c", LeastConnections, 2},
	}
	for _, v := range variants {
		for _, n := range []int{3, 1000} {
			weights := make([]int, n)
			for i := range weights {
				weights[i] = i%5 + 1
			}
			cfg := withStrategy(v.kind)
			cfg.ChoiceCount = v.choices
			lb := newBenchLB(b, cfg, weights)
			ctx := context.Background()
			b.Run(fmt.Sprintf("%s/n=%d/serial", v.name, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					e, _ := lb.Pick(ctx)
					lb.Release(e)
				}
			})
			b.Run(fmt.Sprintf("%s/n=%d/parallel", v.name, n), func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						e, _ := lb.Pick(ctx)
						lb.Release(e)
					}
				})
			})
		}
	}
}

// BenchmarkPickSticky measures a pick for an already bound session.
func BenchmarkPickSticky(b *testing.B) {
	cfg := DefaultLoadBalancerConfig()
	cfg.StickySession = true
	lb := newBenchLB(b, cfg, []int{1, 1, 1})
	ctx := WithSession(context.Background(), "user123")
	b.ReportAllocs()
	for b.Loop() {
		e, _ := lb.Pick(ctx)
		lb.Release(e)
	}
}

// BenchmarkSetHealth measures a health flip, which rebuilds the snapshot and
// the picker: the cost a writer pays so that readers pay nothing.
func BenchmarkSetHealth(b *testing.B) {
	for _, n := range []int{3, 1000} {
		weights := make([]int, n)
		for i := range weights {
			weights[i] = i%5 + 1
		}
		lb := newTestLB(b, withStrategy(Weighted), weights...)
		b.Run(fmt.Sprintf("weighted/n=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				_ = lb.SetHealth("s1", HealthStatus(1+i%2))
				i++
			}
		})
	}
}

// newBenchLB builds an unseeded balancer, as production runs it: seeded
// randomness shares one counter between cores, unseeded does not.
func newBenchLB(b *testing.B, cfg *LoadBalancerConfig, weights []int) *LoadBalancer {
	lb, err := NewLoadBalancer(cfg, nil)
	must(b, err)
	for i, w := range weights {
		must(b, lb.AddServer(fmt.Sprintf("s%d", i+1), "127.0.0.1", 50051+i, w))
	}
	return lb
}
