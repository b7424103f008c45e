package lb

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func newLimitedLB(t testing.TB, kind string, cb *CircuitBreakers, rl *RateLimit, now func() time.Time, n int) *LoadBalancer {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Service, cfg.Strategy.Kind, cfg.CircuitBreakers, cfg.RateLimit = "peervault", kind, cb, rl
	opts := []Option{WithSeed(7)}
	if now != nil {
		opts = append(opts, WithClock(now))
	}
	lb, err := New(cfg, nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := lb.AddServer(fmt.Sprintf("s%d", i+1), "127.0.0.1", 50051+i, 1); err != nil {
			t.Fatal(err)
		}
	}
	return lb
}

// An endpoint at max_requests_per_endpoint is skipped; when all are, the
// pick fails at once with ErrOverloaded; a call ending frees a place.
func TestCircuitBreakerPerEndpoint(t *testing.T) {
	for _, kind := range StrategyKinds() {
		t.Run(kind, func(t *testing.T) {
			lb := newLimitedLB(t, kind, &CircuitBreakers{MaxRequestsPerEndpoint: 2}, nil, nil, 3)
			var held []*Endpoint
			for range 6 {
				e, err := lb.Pick(context.Background())
				if err != nil {
					t.Fatalf("pick %d: %v", len(held)+1, err)
				}
				held = append(held, e)
			}
			for _, e := range held {
				if e.inFlight() > 2 {
					t.Fatalf("%s holds %d calls", e.ID, e.inFlight())
				}
			}
			if _, err := lb.Pick(context.Background()); !errors.Is(err, ErrOverloaded) {
				t.Fatalf("seventh pick: %v, want ErrOverloaded", err)
			}
			lb.Done(held[0], time.Millisecond, Success)
			e, err := lb.Pick(context.Background())
			if err != nil || e != held[0] {
				t.Fatalf("after a call ended on %s: picked %v, %v", held[0].ID, e, err)
			}
			if c := lb.Limited(); c.Overloaded != 1 || c.BreakerSkips == 0 {
				t.Errorf("counts %+v", c)
			}
		})
	}
}

func TestCircuitBreakerPerService(t *testing.T) {
	lb := newLimitedLB(t, RoundRobin, &CircuitBreakers{MaxRequests: 3}, nil, nil, 3)
	var held []*Endpoint
	for range 3 {
		e, err := lb.Pick(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, e)
	}
	if _, err := lb.Pick(context.Background()); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("fourth pick: %v, want ErrOverloaded", err)
	}
	lb.Release(held[1])
	if _, err := lb.Pick(context.Background()); err != nil {
		t.Fatalf("after a release: %v", err)
	}
}

// Under 64 concurrent callers, no endpoint ever holds more than its cap.
func TestCircuitBreakerUnderConcurrency(t *testing.T) {
	lb := newLimitedLB(t, LeastConnections, &CircuitBreakers{MaxRequestsPerEndpoint: 4}, nil, nil, 3)
	var inFlight [3]atomic.Int32
	var peak atomic.Int32
	var overloaded atomic.Int32
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for range 500 {
				e, err := lb.Pick(context.Background())
				if err != nil {
					overloaded.Add(1)
					continue
				}
				i := e.Port - 50051
				n := inFlight[i].Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				inFlight[i].Add(-1)
				lb.Done(e, 0, Success)
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > 4 {
		t.Errorf("an endpoint held %d calls at once, over its cap of 4", p)
	}
	t.Logf("peak %d in flight on one endpoint; %d of 32,000 picks refused", peak.Load(), overloaded.Load())
}

// A rate limit of 100 a second holds within 5% over 10 s of constant
// demand (picks every millisecond on the balancer's clock).
func TestRateLimitHolds(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	lb := newLimitedLB(t, RoundRobin, nil, &RateLimit{RequestsPerSecond: 100}, clock.now, 1)
	admitted := 0
	for range 10000 {
		if e, err := lb.Pick(context.Background()); err == nil {
			admitted++
			lb.Done(e, 0, Success)
		}
		clock.advance(time.Millisecond)
	}
	t.Logf("%d calls admitted in 10 s at 100 a second", admitted)
	if admitted < 1000 || admitted > 1050 {
		t.Errorf("%d calls in 10 s at 100 a second (burst %d)", admitted, DefaultBurst(100))
	}
	if c := lb.Limited(); c.RateLimitSkips == 0 || c.Overloaded != uint64(10000-admitted) {
		t.Errorf("counts %+v", c)
	}
	// Over two endpoints, one out of tokens is skipped for the other.
	lb = newLimitedLB(t, RoundRobin, nil, &RateLimit{RequestsPerSecond: 1, Burst: 1}, clock.now, 2)
	a, _ := lb.Pick(context.Background())
	b, err := lb.Pick(context.Background())
	if err != nil || a == b {
		t.Errorf("second pick %v, %v: want the other endpoint", b, err)
	}
}

func TestLimitSettings(t *testing.T) {
	for _, cfg := range []Config{
		{Strategy: StrategyConfig{Kind: RoundRobin}, CircuitBreakers: &CircuitBreakers{MaxRequests: -1}},
		{Strategy: StrategyConfig{Kind: RoundRobin}, CircuitBreakers: &CircuitBreakers{MaxRequestsPerEndpoint: 1 << 25}},
		{Strategy: StrategyConfig{Kind: RoundRobin}, RateLimit: &RateLimit{RequestsPerSecond: 0}},
		{Strategy: StrategyConfig{Kind: RoundRobin}, RateLimit: &RateLimit{RequestsPerSecond: 5, Burst: -1}},
	} {
		if _, err := New(cfg, nil); err == nil {
			t.Errorf("%+v %+v: no error", cfg.CircuitBreakers, cfg.RateLimit)
		}
	}
}

// BenchmarkPickWithLimits is a pick and its end with circuit breakers and
// a rate limit configured but not reached, beside one without.
func BenchmarkPickWithLimits(b *testing.B) {
	for _, tc := range []struct {
		name string
		cb   *CircuitBreakers
		rl   *RateLimit
	}{
		{"none", nil, nil},
		{"breakers", &CircuitBreakers{MaxRequests: 1 << 20, MaxRequestsPerEndpoint: 1 << 20}, nil},
		{"breakers+rate", &CircuitBreakers{MaxRequests: 1 << 20, MaxRequestsPerEndpoint: 1 << 20}, &RateLimit{RequestsPerSecond: 1e9, Burst: 1 << 20}},
	} {
		lb := newLimitedLB(b, RoundRobin, tc.cb, tc.rl, nil, 3)
		ctx := context.Background()
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				e, _ := lb.Pick(ctx)
				lb.Done(e, time.Millisecond, Success)
			}
		})
	}
}
