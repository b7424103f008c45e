package lb

import (
	"context"
	"testing"
	"time"
)

func newPeakLB(t *testing.T, clock *fakeClock, weights ...int) *LoadBalancer {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Strategy = StrategyConfig{Kind: PeakEWMA, ChoiceCount: max(len(weights), 2)} // compare all: exact expectations
	lb, err := New(cfg, nil, WithClock(clock.now), WithSeed(7))
	must(t, err)
	for i, w := range weights {
		must(t, lb.AddServer("s"+string(rune('1'+i)), "127.0.0.1", 50051+i, w))
	}
	return lb
}

func TestPeakEWMAFollowsPeaksAndDecays(t *testing.T) {
	clock := &fakeClock{t: time.Unix(0, int64(time.Hour))}
	lb := newPeakLB(t, clock, 1)
	e, _ := lb.Endpoint("s1")
	s := lb.rules.Load().strategy.(*peakEWMA)
	estimate := func() time.Duration {
		ns, _ := s.decayed(e.rtt.Load(), ticks(clock.now().UnixNano()))
		return time.Duration(ns)
	}
	p, _ := lb.Pick(context.Background())
	if got := estimate(); got != DefaultRTT {
		t.Fatalf("estimate without samples %v, want the default %v", got, DefaultRTT)
	}
	lb.Done(p, 100*time.Millisecond, Success)
	if got := estimate(); got != 100*time.Millisecond {
		t.Fatalf("a slower sample sets the estimate at once: %v", got)
	}
	// A faster sample right away barely moves it; after one decay period
	// it has moved most of the way (1 - 1/e).
	p, _ = lb.Pick(context.Background())
	lb.Done(p, 10*time.Millisecond, Success)
	if got := estimate(); got < 99*time.Millisecond {
		t.Fatalf("an immediate fast sample moved the peak to %v", got)
	}
	clock.advance(DefaultDecay)
	p, _ = lb.Pick(context.Background())
	lb.Done(p, 10*time.Millisecond, Success)
	if got := estimate(); got < 40*time.Millisecond || got > 45*time.Millisecond {
		t.Fatalf("after one decay period the estimate is %v, want about 10 + 90/e = 43ms", got)
	}
	// Without samples it fades towards zero, so an avoided endpoint is
	// tried again.
	clock.advance(2 * DefaultDecay)
	if got := estimate(); got > 6*time.Millisecond {
		t.Fatalf("after two idle decay periods the estimate is %v", got)
	}
	// A fast failure counts as slow.
	p, _ = lb.Pick(context.Background())
	lb.Done(p, time.Millisecond, Failure)
	if got := estimate(); got != DefaultFailurePenalty {
		t.Fatalf("a 1ms failure set the estimate to %v, want the %v penalty", got, DefaultFailurePenalty)
	}
}

func TestPeakEWMAPrefersTheFastAndTheIdle(t *testing.T) {
	clock := &fakeClock{t: time.Unix(0, int64(time.Hour))}
	lb := newPeakLB(t, clock, 1, 1, 1)
	ctx := context.Background()
	// Teach it: s2 answers in 100ms, the others in 10ms.
	for range 30 {
		e, _ := lb.Pick(ctx)
		took := 10 * time.Millisecond
		if e.ID == "s2" {
			took = 100 * time.Millisecond
		}
		clock.advance(time.Millisecond)
		lb.Done(e, took, Success)
	}
	got := map[string]int{}
	for range 300 {
		e, _ := lb.Pick(ctx)
		got[e.ID]++
		lb.Release(e)
	}
	if got["s2"] != 0 || got["s1"]+got["s3"] != 300 {
		t.Fatalf("picks %v: want s1 and s3 only", got)
	}
	// Calls in flight raise the cost, by default as their square root:
	// with 120 held on s1 and s3 each, the slow but idle s2 is cheaper
	// (100ms × 1 < 10ms × √121), with 20 it is not (10ms × √21 = 46ms).
	hold := func(n int) (release func()) {
		var held []*Endpoint
		for _, id := range []string{"s1", "s3"} {
			e, _ := lb.Endpoint(id)
			for range n {
				lb.acquire(lb.rules.Load(), e)
				held = append(held, e)
			}
		}
		return func() {
			for _, e := range held {
				lb.Release(e)
			}
		}
	}
	release := hold(20)
	if e, _ := lb.Pick(ctx); e.ID == "s2" {
		t.Fatalf("picked s2 with 20 calls in flight on s1 and s3")
	}
	release()
	release = hold(120)
	if e, _ := lb.Pick(ctx); e.ID != "s2" {
		t.Fatalf("picked %s with s1 and s3 busy", e.ID)
	}
	release()
}

// With active_request_bias = 1 the cost is tower's and Finagle's, linear in
// the calls in flight: 20 held on each fast endpoint make the slow one
// cheaper (100ms × 1 < 10ms × 21).
func TestPeakEWMALinearBias(t *testing.T) {
	clock := &fakeClock{t: time.Unix(0, int64(time.Hour))}
	cfg := DefaultConfig()
	one := 1.0
	cfg.Strategy = StrategyConfig{Kind: PeakEWMA, ChoiceCount: 3, ActiveRequestBias: &one}
	lb, err := New(cfg, nil, WithClock(clock.now), WithSeed(7))
	must(t, err)
	for i := range 3 {
		must(t, lb.AddServer("s"+string(rune('1'+i)), "127.0.0.1", 50051+i, 1))
	}
	for _, id := range []string{"s1", "s2", "s3"} {
		e, _ := lb.Endpoint(id)
		lb.acquire(lb.rules.Load(), e)
		took := 10 * time.Millisecond
		if id == "s2" {
			took = 100 * time.Millisecond
		}
		lb.Done(e, took, Success)
	}
	for _, n := range []int{5, 20} {
		var held []*Endpoint
		for _, id := range []string{"s1", "s3"} {
			e, _ := lb.Endpoint(id)
			for range n {
				lb.acquire(lb.rules.Load(), e)
				held = append(held, e)
			}
		}
		e, _ := lb.Pick(context.Background())
		if want := n == 20; (e.ID == "s2") != want {
			t.Errorf("%d in flight on s1 and s3: picked %s", n, e.ID)
		}
		lb.Release(e)
		for _, e := range held {
			lb.Release(e)
		}
	}
}

// The default estimate is a guess: the first sample replaces it, however
// fast, instead of being averaged with it.
func TestPeakEWMAFirstSampleReplacesTheGuess(t *testing.T) {
	clock := &fakeClock{t: time.Unix(0, int64(time.Hour))}
	lb := newPeakLB(t, clock, 1)
	e, _ := lb.Pick(context.Background())
	s := lb.rules.Load().strategy.(*peakEWMA)
	lb.Done(e, 2*time.Millisecond, Success)
	if ns, _ := s.decayed(e.rtt.Load(), ticks(clock.now().UnixNano())); time.Duration(ns) != 2*time.Millisecond {
		got := time.Duration(ns)
		t.Fatalf("after a first 2ms answer the estimate is %v", got)
	}
}

// A busy endpoint's peak fades within a few hundred answers, not only
// after a decay period: otherwise it keeps its rarest peak while a quiet
// endpoint's estimate follows its typical answer.
func TestPeakEWMABusyEndpointForgetsARarePeak(t *testing.T) {
	clock := &fakeClock{t: time.Unix(0, int64(time.Hour))}
	lb := newPeakLB(t, clock, 1)
	s := lb.rules.Load().strategy.(*peakEWMA)
	e, _ := lb.Endpoint("s1")
	answer := func(took time.Duration) {
		p, _ := lb.Pick(context.Background())
		clock.advance(100 * time.Microsecond) // ten thousand answers a second
		lb.Done(p, took, Success)
	}
	answer(10 * time.Millisecond)
	answer(500 * time.Millisecond)
	for range 500 {
		answer(10 * time.Millisecond)
	}
	// 50ms of answers is 0.5% of a decay period: time alone would leave
	// the estimate near 500ms.
	if ns, _ := s.decayed(e.rtt.Load(), ticks(clock.now().UnixNano())); time.Duration(ns) > 20*time.Millisecond {
		got := time.Duration(ns)
		t.Fatalf("after 500 answers of 10ms the estimate is still %v", got)
	}
}

// least_connections over unequal weights spreads calls in flight in
// proportion to weight, as Envoy's least request does.
func TestWeightedLeastRequest(t *testing.T) {
	for _, bias := range []float64{1, 0} {
		cfg := DefaultConfig()
		cfg.Strategy = StrategyConfig{Kind: LeastConnections, ActiveRequestBias: &bias}
		lb, err := New(cfg, nil, WithSeed(3))
		must(t, err)
		must(t, lb.AddServer("heavy", "h", 1, 3))
		must(t, lb.AddServer("light", "h", 2, 1))
		held := map[string]int{}
		for range 40 {
			e, err := lb.Pick(context.Background())
			must(t, err)
			held[e.ID]++ // never released: calls pile up in flight
		}
		switch bias {
		case 1: // (active+1)/weight levels out at 3:1
			if held["heavy"] < 29 || held["heavy"] > 31 {
				t.Errorf("bias 1: held %v, want about 30:10", held)
			}
		case 0: // load ignored: the weight alone decides
			if held["heavy"] != 40 {
				t.Errorf("bias 0: held %v, want all on the heavier", held)
			}
		}
	}
}

func TestPanicThresholdSpreadsOverAll(t *testing.T) {
	for _, threshold := range []float64{0, 50} {
		cfg := DefaultConfig()
		cfg.PanicThreshold = threshold
		lb, err := New(cfg, nil, WithSeed(1))
		must(t, err)
		for _, id := range []string{"a", "b", "c"} {
			must(t, lb.AddServer(id, "h", 1, 1))
		}
		must(t, lb.SetHealth("a", HealthUnhealthy))
		if lb.Panicking() {
			t.Fatalf("threshold %g: panic with 2 of 3 healthy", threshold)
		}
		must(t, lb.SetHealth("b", HealthUnhealthy))
		got := map[string]int{}
		for range 300 {
			e, err := lb.Pick(context.Background())
			must(t, err)
			got[e.ID]++
			lb.Release(e)
		}
		if threshold == 0 {
			if got["c"] != 300 || lb.Panicking() {
				t.Errorf("no threshold: picks %v, want all on the one healthy", got)
			}
			continue
		}
		if !lb.Panicking() || !lb.GetServerStats().Panic || got["a"] != 100 || got["b"] != 100 || got["c"] != 100 {
			t.Errorf("threshold 50, 1 of 3 healthy: panic %v, picks %v; want all three alike", lb.Panicking(), got)
		}
		must(t, lb.SetHealth("a", HealthHealthy))
		if lb.Panicking() {
			t.Error("still in panic with 2 of 3 healthy")
		}
	}
}
