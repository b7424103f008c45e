package lb

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"
)

// newWRR builds weighted_round_robin over n endpoints on a fake clock.
func newWRR(t testing.TB, cfg *WeightedRoundRobinConfig, n int) (*LoadBalancer, *fakeClock, []*Endpoint) {
	t.Helper()
	clock := &fakeClock{t: time.Unix(1000, 0)}
	b, err := New(Config{Service: "peervault", Strategy: StrategyConfig{Kind: WeightedRoundRobin, WeightedRoundRobin: cfg}}, nil, WithClock(clock.now), WithSeed(9))
	must(t, err)
	for i := range n {
		must(t, b.AddServer(fmt.Sprintf("s%d", i+1), "10.0.0.1", 50051+i, 1))
	}
	return b, clock, b.Endpoints()
}

// shares makes n picks and returns each endpoint's share.
func shares(t testing.TB, b *LoadBalancer, eps []*Endpoint, n int) []float64 {
	t.Helper()
	counts := pickCounts(t, b, context.Background(), n)
	out := make([]float64, len(eps))
	for i, e := range eps {
		out[i] = float64(counts[e.ID]) / float64(n)
	}
	return out
}

// report has endpoint i answer qps[i] a second at utilization util[i].
func report(b *LoadBalancer, eps []*Endpoint, qps, util []float64) {
	for i, e := range eps {
		b.ReportLoad(e, LoadReport{CPUUtilization: util[i], QPS: qps[i]})
	}
}

func near(got, want, tolerance float64) bool { return math.Abs(got-want) <= tolerance*want }

// Servers of capacities 1:2:4 at the same request rate report
// utilizations 4:2:1 of one another, so A58's weights qps/utilization are
// 1:2:4; after the blackout period the picks follow them.
func TestWeightedRoundRobinFollowsReportedLoad(t *testing.T) {
	b, clock, eps := newWRR(t, nil, 3)
	qps, util := []float64{100, 100, 100}, []float64{0.8, 0.4, 0.2}
	report(b, eps, qps, util)
	if got := shares(t, b, eps, 3000); !near(got[0], 1.0/3, 0.02) || !near(got[2], 1.0/3, 0.02) {
		t.Fatalf("during the blackout period shares are %v, want thirds", got)
	}
	clock.advance(DefaultBlackoutPeriod)
	report(b, eps, qps, util)
	got := shares(t, b, eps, 70000)
	for i, want := range []float64{1.0 / 7, 2.0 / 7, 4.0 / 7} {
		if !near(got[i], want, 0.01) {
			t.Errorf("after the blackout: shares %v, want 1:2:4 within 1%%", got)
			break
		}
	}
	// Reports stop: after weight_expiration_period the weights are
	// forgotten, and when reports resume the blackout starts over.
	clock.advance(DefaultWeightExpirationPeriod)
	report(b, eps, qps, util)
	if got := shares(t, b, eps, 3000); !near(got[0], 1.0/3, 0.02) || !near(got[2], 1.0/3, 0.02) {
		t.Errorf("after expiry shares are %v, want thirds", got)
	}
	clock.advance(DefaultBlackoutPeriod)
	report(b, eps, qps, util)
	if got := shares(t, b, eps, 7000); !near(got[2], 4.0/7, 0.02) {
		t.Errorf("a blackout period after reports resumed, shares are %v, want 1:2:4", got)
	}
}

// Errors count against an endpoint as utilization (eps/qps ×
// error_utilization_penalty); an endpoint without reports gets the mean
// weight of the others; a report without utilization or QPS is ignored.
func TestWeightedRoundRobinWeights(t *testing.T) {
	zero := time.Duration(0)
	b, clock, eps := newWRR(t, &WeightedRoundRobinConfig{BlackoutPeriod: zero}, 4)
	b.ReportLoad(eps[0], LoadReport{CPUUtilization: 0.5, QPS: 100})
	b.ReportLoad(eps[1], LoadReport{CPUUtilization: 0.25, QPS: 100, EPS: 25}) // (0.25 + 0.25) → like eps[0]
	b.ReportLoad(eps[2], LoadReport{ApplicationUtilization: 0.25, CPUUtilization: 0.9, QPS: 100})
	b.ReportLoad(eps[3], LoadReport{QPS: 100}) // no utilization: ignored
	clock.advance(DefaultWeightUpdatePeriod)
	b.ReportLoad(eps[0], LoadReport{CPUUtilization: 0.5, QPS: 100})
	got := shares(t, b, eps, 60000)
	// Weights 200, 200, 400, and the mean 266.7 for the silent one.
	sum := 200 + 200 + 400 + 800.0/3
	for i, w := range []float64{200, 200, 400, 800.0 / 3} {
		if !near(got[i], w/sum, 0.02) {
			t.Fatalf("shares %v, want %v", got, []float64{200 / sum, 200 / sum, 400 / sum, 800 / 3 / sum})
		}
	}
}

// Weights move at most once a weight_update_period, however many reports
// arrive.
func TestWeightedRoundRobinUpdatesOncePerPeriod(t *testing.T) {
	b, clock, eps := newWRR(t, &WeightedRoundRobinConfig{WeightUpdatePeriod: 5 * time.Second}, 2)
	s := b.rules.Load().strategy.(*weightedRoundRobin)
	for range 100 {
		report(b, eps, []float64{10, 10}, []float64{0.5, 0.5})
		clock.advance(10 * time.Millisecond)
	}
	if g := s.generation.Load(); g != 1 {
		t.Errorf("generation %d after 1s of reports, want 1", g)
	}
	clock.advance(5 * time.Second)
	report(b, eps, []float64{10, 10}, []float64{0.5, 0.5})
	if g := s.generation.Load(); g != 2 {
		t.Errorf("generation %d after the period, want 2", g)
	}
}

func TestWeightedRoundRobinRetriesAndAllocations(t *testing.T) {
	zero := time.Duration(0)
	b, _, eps := newWRR(t, &WeightedRoundRobinConfig{BlackoutPeriod: zero}, 3)
	report(b, eps, []float64{100, 100, 100}, []float64{0.9, 0.1, 0.1})
	for range 100 {
		e, err := b.PickExcluding(context.Background(), eps[1:])
		must(t, err)
		b.Release(e)
		if e != eps[0] {
			t.Fatalf("with two tried, picked %s", e.ID)
		}
	}
	if allocs := testing.AllocsPerRun(1000, func() { e, _ := b.Pick(context.Background()); b.Release(e) }); allocs != 0 {
		t.Errorf("%v allocations per pick", allocs)
	}
	if allocs := testing.AllocsPerRun(1000, func() { b.ReportLoad(eps[0], LoadReport{CPUUtilization: 0.5, QPS: 10}) }); allocs != 0 {
		t.Errorf("%v allocations per load report", allocs)
	}
}

func TestWeightedRoundRobinSettingsAreChecked(t *testing.T) {
	neg := -1.0
	for _, c := range []StrategyConfig{
		{Kind: RoundRobin, WeightedRoundRobin: &WeightedRoundRobinConfig{}},
		{Kind: WeightedRoundRobin, WeightedRoundRobin: &WeightedRoundRobinConfig{BlackoutPeriod: -1}},
		{Kind: WeightedRoundRobin, WeightedRoundRobin: &WeightedRoundRobinConfig{ErrorUtilizationPenalty: &neg}},
		{Kind: WeightedRoundRobin, WeightedRoundRobin: &WeightedRoundRobinConfig{OOBReportingPeriod: time.Second}},
		{Kind: WeightedRoundRobin, SlowStart: &SlowStart{Window: time.Second}},
	} {
		if _, err := New(Config{Strategy: c}, nil); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
