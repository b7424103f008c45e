package lb

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
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
		{"peak_ewma", PeakEWMA, 0},
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
	for _, kind := range StrategyKinds() {
		for _, n := range []int{3, 1000, 10000} {
			lb := newTestLB(b, withStrategy(kind))
			must(b, lb.Sync(specs(n)))
			b.Run(fmt.Sprintf("%s/n=%d", kind, n), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					_ = lb.SetHealth("s1", HealthStatus(1+i%2))
					i++
				}
			})
		}
	}
}

// specs returns n endpoints s1…sN with weights cycling 1..5.
func specs(n int) []EndpointSpec {
	out := make([]EndpointSpec, n)
	for i := range out {
		out[i] = EndpointSpec{ID: fmt.Sprintf("s%d", i+1), Host: "10.0.0.1", Port: 1 + i%65535, Weight: i%5 + 1}
	}
	return out
}

// BenchmarkBuild measures making a balancer over n endpoints by each public
// path: one Sync, or AddServer one endpoint at a time; then a first pick.
func BenchmarkBuild(b *testing.B) {
	for _, kind := range StrategyKinds() {
		for _, n := range []int{1000, 10000} {
			list := specs(n)
			b.Run(fmt.Sprintf("%s/sync/n=%d", kind, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					lb := newTestLB(b, withStrategy(kind))
					must(b, lb.Sync(list))
					e, _ := lb.Pick(context.Background())
					lb.Release(e)
				}
			})
			b.Run(fmt.Sprintf("%s/add_server/n=%d", kind, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					lb := newTestLB(b, withStrategy(kind))
					for _, s := range list {
						must(b, lb.AddServer(s.ID, s.Host, s.Port, s.Weight))
					}
					e, _ := lb.Pick(context.Background())
					lb.Release(e)
				}
			})
		}
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

// BenchmarkDone measures recording one call's outcome: counters on the
// caller's stripe and the latency average (and peak_ewma's estimate).
func BenchmarkDone(b *testing.B) {
	for _, kind := range []string{RoundRobin, LeastConnections, PeakEWMA} {
		lb := newBenchLB(b, withStrategy(kind), []int{1, 1, 1})
		e, _ := lb.Endpoint("s1")
		b.Run(kind+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				lb.Done(e, time.Millisecond, Success)
			}
		})
		b.Run(kind+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					lb.Done(e, time.Millisecond, Success)
				}
			})
		})
	}
}

// BenchmarkSubset measures a pick from a subset holding half of 1,000
// endpoints (the other half, say, still connecting), and the worst case: the
// first pick after the subset or the balancer changed, which builds the
// subset's picker.
func BenchmarkSubset(b *testing.B) {
	lb := newBenchLB(b, withStrategy(RoundRobin), slices.Repeat([]int{1}, 1000))
	ctx := context.Background()
	half := lb.Endpoints()[:500]
	sub := lb.NewSubset()
	sub.Allow(half)
	b.Run("pick/half_of_1000", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e, _ := sub.Pick(ctx, nil)
			lb.Release(e)
		}
	})
	b.Run("first_pick_after_change/half_of_1000", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sub.Allow(half)
			e, _ := sub.Pick(ctx, nil)
			lb.Release(e)
		}
	})
}

// BenchmarkOutlierDetection measures what outlier detection adds: to a
// pick (nothing: ejection is decided when a snapshot is built) and to an
// outcome (a consecutive-failure counter and the interval check).
func BenchmarkOutlierDetection(b *testing.B) {
	for _, on := range []bool{false, true} {
		cfg := DefaultConfig()
		if on {
			od := DefaultOutlierDetection()
			cfg.OutlierDetection = &od
		}
		lb, err := New(cfg, nil)
		must(b, err)
		for i := range 3 {
			must(b, lb.AddServer(fmt.Sprintf("s%d", i), "h", 1+i, 1))
		}
		ctx := context.Background()
		b.Run(fmt.Sprintf("outlier_detection=%v/pick", on), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				e, _ := lb.Pick(ctx)
				lb.Release(e)
			}
		})
		e, _ := lb.Endpoint("s1")
		b.Run(fmt.Sprintf("outlier_detection=%v/outcome", on), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				lb.Done(e, time.Millisecond, Success)
			}
		})
	}
}

// BenchmarkPickHash measures a keyed pick (PickHash, then Release) at 3
// and 1,000 endpoints: ring_hash and maglev side by side, plain and under
// bounded load (hash_balance_factor 125, which reads the calls in flight).
func BenchmarkPickHash(b *testing.B) {
	keys := make([]uint64, 1024)
	for i := range keys {
		keys[i] = uint64(i) * 0x9e3779b97f4a7c15
	}
	for _, kind := range []string{RingHash, Maglev} {
		for _, factor := range []int{0, 125} {
			for _, n := range []int{3, 1000} {
				lb, err := New(Config{Service: "peervault", Strategy: StrategyConfig{Kind: kind, HashBalanceFactor: factor}}, nil)
				must(b, err)
				must(b, lb.Sync(specs(n)))
				ctx := context.Background()
				name := kind
				if factor != 0 {
					name += "+bounded"
				}
				b.Run(fmt.Sprintf("%s/n=%d/serial", name, n), func(b *testing.B) {
					b.ReportAllocs()
					i := 0
					for b.Loop() {
						e, _ := lb.PickHash(ctx, keys[i&1023], nil)
						lb.Release(e)
						i++
					}
				})
				b.Run(fmt.Sprintf("%s/n=%d/parallel", name, n), func(b *testing.B) {
					b.ReportAllocs()
					b.RunParallel(func(pb *testing.PB) {
						i := 0
						for pb.Next() {
							e, _ := lb.PickHash(ctx, keys[i&1023], nil)
							lb.Release(e)
							i++
						}
					})
				})
			}
		}
	}
}

// BenchmarkWeightedRoundRobin measures weighted_round_robin's pick (with
// Release) over endpoints whose reports give weights 1..5, and taking one
// load report, at 3 and 1,000 endpoints.
func BenchmarkWeightedRoundRobin(b *testing.B) {
	for _, n := range []int{3, 1000} {
		zero := time.Duration(0)
		lb, err := New(Config{Service: "peervault", Strategy: StrategyConfig{Kind: WeightedRoundRobin,
			WeightedRoundRobin: &WeightedRoundRobinConfig{BlackoutPeriod: zero}}}, nil)
		must(b, err)
		must(b, lb.Sync(specs(n)))
		eps := lb.Endpoints()
		for i, e := range eps {
			lb.ReportLoad(e, LoadReport{CPUUtilization: 1 / float64(i%5+1), QPS: 100})
		}
		ctx := context.Background()
		b.Run(fmt.Sprintf("pick/n=%d/serial", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				e, _ := lb.Pick(ctx)
				lb.Release(e)
			}
		})
		b.Run(fmt.Sprintf("pick/n=%d/parallel", n), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					e, _ := lb.Pick(ctx)
					lb.Release(e)
				}
			})
		})
		b.Run(fmt.Sprintf("report_load/n=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				lb.ReportLoad(eps[i%n], LoadReport{CPUUtilization: 0.5, QPS: 100})
				i++
			}
		})
	}
}
