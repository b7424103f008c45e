package lb

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/peervault/pvlb/pkg/statuscode"
)

func configWith(kind string, adjust func(*Config)) Config {
	cfg := DefaultConfig()
	cfg.Service, cfg.Strategy.Kind = "peervault", kind
	if adjust != nil {
		adjust(&cfg)
	}
	return cfg
}

// holdOn picks until n calls are in flight on the endpoint id and
// releases every other pick.
func holdOn(t *testing.T, b *LoadBalancer, id string, n int) []*Endpoint {
	t.Helper()
	var held []*Endpoint
	for range 100 * n {
		e, err := b.Pick(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if e.ID != id {
			b.Release(e)
			continue
		}
		if held = append(held, e); len(held) == n {
			return held
		}
	}
	t.Fatalf("no %d picks of %s", n, id)
	return nil
}

// wantSettled checks that, with no call in flight, every count of calls
// in flight is back to zero.
func wantSettled(t *testing.T, b *LoadBalancer) {
	t.Helper()
	for _, e := range b.Endpoints() {
		if e.InFlight() != 0 || e.inFlight() != 0 {
			t.Errorf("%s: %d calls in flight by its counts, %d by its load word; want 0", e.ID, e.InFlight(), e.inFlight())
		}
	}
	if n, l, w := b.total.Load(), b.limited.Load(), b.waiting.Load(); n != 0 || l != 0 || w != 0 {
		t.Errorf("the service counts %d in flight (bounded load), %d in flight and %d waiting (circuit breakers); want 0", n, l, w)
	}
}

// Calls picked under a strategy that counts nothing in flight end under
// one that does, and calls it counted end under one that does not: once
// they have all ended every count is exact, and a strategy that reads
// load finds no stale count.
func TestReconfigureSettlesCountsInFlight(t *testing.T) {
	b := newTestLB(t, withStrategy(RoundRobin), 1, 1, 1)
	held := holdOn(t, b, "s1", 2)
	must(t, b.Reconfigure(configWith(LeastConnections, nil)))
	if got := b.GetServerStats().Strategy; got != LeastConnections {
		t.Fatalf("strategy %s after the change", got)
	}
	for range 4 {
		e, err := b.Pick(context.Background())
		must(t, err)
		held = append(held, e)
	}
	must(t, b.Reconfigure(configWith(RoundRobin, nil)))
	more := holdOn(t, b, "s2", 1)
	must(t, b.Reconfigure(configWith(LeastConnections, nil)))
	for _, e := range append(held, more...) {
		b.Done(e, time.Millisecond, Success)
	}
	wantSettled(t, b)
	counts := pickCounts(t, b, context.Background(), 3)
	if len(counts) != 3 {
		t.Fatalf("least_connections over idle endpoints picked %v, want each once", counts)
	}
}

// A lower cap holds at once over the calls the old cap counted.
func TestReconfigureLowersACapAtOnce(t *testing.T) {
	capped := func(n int) Config {
		return configWith(RoundRobin, func(c *Config) { c.CircuitBreakers = &CircuitBreakers{MaxRequests: n} })
	}
	b := newTestLB(t, withStrategy(RoundRobin), 1, 1, 1)
	must(t, b.Reconfigure(capped(10)))
	var held []*Endpoint
	for range 3 {
		e, err := b.Pick(context.Background())
		must(t, err)
		held = append(held, e)
	}
	must(t, b.Reconfigure(capped(3)))
	if _, err := b.Pick(context.Background()); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("a fourth call under max_requests = 3: %v, want ErrOverloaded", err)
	}
	b.Done(held[0], time.Millisecond, Success)
	e, err := b.Pick(context.Background())
	must(t, err)
	b.Done(e, time.Millisecond, Success)
	for _, e := range held[1:] {
		b.Done(e, time.Millisecond, Success)
	}
	wantSettled(t, b)
}

// Strategies, limits and counting change back and forth while calls run
// on every core; once they end, nothing is left counted and no call was
// refused.
func TestReconfigureUnderConcurrentCalls(t *testing.T) {
	configs := []Config{
		configWith(RoundRobin, nil),
		configWith(LeastConnections, nil),
		configWith(Maglev, func(c *Config) { c.Strategy.HashBalanceFactor = 150 }),
		configWith(PeakEWMA, func(c *Config) {
			c.CircuitBreakers = &CircuitBreakers{MaxRequests: 1 << 20, MaxPending: 1 << 20}
		}),
		configWith(Random, func(c *Config) { c.Sticky = StickyConfig{Enabled: true, TTL: time.Minute} }),
		configWith(LeastConnections, func(c *Config) {
			c.Strategy.ChoiceCount = 2
			od := DefaultOutlierDetection()
			od.ConsecutiveFailures = 1000
			c.OutlierDetection = &od
		}),
		configWith(Weighted, func(c *Config) { c.RateLimit = &RateLimit{RequestsPerSecond: 1e9, Burst: MaxLimit} }),
	}
	b := newTestLB(t, withStrategy(RoundRobin), 1, 2, 3, 4)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Go(func() {
			ctx := WithSession(context.Background(), string(rune('a'+w)))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				pending := b.BeginPending()
				e, err := b.Pick(ctx)
				if pending {
					b.EndPending()
				}
				if err != nil {
					errs <- err
					return
				}
				if i%3 == 0 {
					b.Release(e)
				} else {
					b.Done(e, time.Millisecond, Success)
				}
			}
		})
	}
	for i := range 100 {
		must(t, b.Reconfigure(configs[i%len(configs)]))
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	wantSettled(t, b)
}

// A configuration the balancer cannot run is refused and the old one
// keeps running; an unchanged strategy keeps what it learnt.
func TestReconfigureRefusesAndKeeps(t *testing.T) {
	b := newTestLB(t, withStrategy(PeakEWMA), 1, 1)
	strategy := b.rules.Load().strategy
	bad := configWith(RoundRobin, func(c *Config) { c.Strategy.ChoiceCount = 1 })
	if err := b.Reconfigure(bad); err == nil {
		t.Fatal("choice_count on round_robin accepted")
	}
	if err := b.Reconfigure(configWith(PeakEWMA, func(c *Config) { c.Service = "other" })); err == nil {
		t.Fatal("a change of service name accepted")
	}
	if got := b.GetServerStats().Strategy; got != PeakEWMA {
		t.Fatalf("strategy %s after refused changes", got)
	}
	must(t, b.Reconfigure(configWith(PeakEWMA, func(c *Config) { c.PanicThreshold = 50 })))
	if b.rules.Load().strategy != strategy {
		t.Fatal("a change of panic_threshold replaced the unchanged strategy")
	}
	if b.rules.Load().settling {
		t.Fatal("rules that count as before settle")
	}
}

// Turning outlier detection off returns the ejected; changing it keeps
// their ejections running.
func TestReconfigureOutlierDetection(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e6, 0)}
	od := OutlierDetection{Interval: 10 * time.Second, BaseEjectionTime: 30 * time.Second, MaxEjectionTime: 300 * time.Second, MaxEjectionPercent: 50, ConsecutiveFailures: 2}
	b, _ := newOutlierLB(t, clock, od, 3)
	for range 6 { // round robin: two calls reach s1, both failing
		call(t, b, "s1")
	}
	s1, _ := b.Endpoint("s1")
	if !s1.ejected.Load() {
		t.Fatal("s1 not ejected after 2 consecutive failures")
	}
	cfg := b.Config()
	longer := od
	longer.Interval = 20 * time.Second
	cfg.OutlierDetection = &longer
	must(t, b.Reconfigure(cfg))
	if !s1.ejected.Load() {
		t.Fatal("changing outlier_detection returned s1")
	}
	cfg.OutlierDetection = nil
	must(t, b.Reconfigure(cfg))
	if s1.ejected.Load() || len(b.current().eligible) != 3 {
		t.Fatal("s1 still out with outlier detection off")
	}
}

// Every setting of Config but the service's name is named when it
// changes.
func TestChangedSettingsNamesEverySetting(t *testing.T) {
	if n, named := reflect.TypeFor[Config]().NumField()-1, len(changedSettings(Config{}, Config{
		Strategy: StrategyConfig{Kind: "x"}, Sticky: StickyConfig{Enabled: true}, Outcomes: OutcomeConfig{FailureCodes: statuscode.SetOf(statuscode.Unknown)},
		PanicThreshold: 1, OutlierDetection: &OutlierDetection{}, CircuitBreakers: &CircuitBreakers{}, RateLimit: &RateLimit{},
		Locality: &Locality{}, Subset: &SubsetConfig{},
	})); n != named {
		t.Fatalf("Config has %d settings, changedSettings names %d", n, named)
	}
}

// BenchmarkReconfigure: one change of strategy between one that counts
// calls in flight and one that does not, with its new snapshot and picker.
func BenchmarkReconfigure(b *testing.B) {
	for _, n := range []int{3, 1000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			weights := make([]int, n)
			for i := range weights {
				weights[i] = 1 + i%5
			}
			lb := newTestLB(b, withStrategy(RoundRobin), weights...)
			configs := []Config{configWith(LeastConnections, nil), configWith(RoundRobin, nil)}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if err := lb.Reconfigure(configs[i%2]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
