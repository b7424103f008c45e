package lb

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// newTestLB builds a balancer with endpoints s1..sN of the given weights.
func newTestLB(t testing.TB, cfg *LoadBalancerConfig, weights ...int) *LoadBalancer {
	t.Helper()
	if cfg == nil {
		cfg = DefaultLoadBalancerConfig()
	}
	cfg.Service = "peervault"
	lb, err := NewLoadBalancer(cfg, nil, WithSeed(42))
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range weights {
		if err := lb.AddServer(fmt.Sprintf("s%d", i+1), "127.0.0.1", 50051+i, w); err != nil {
			t.Fatal(err)
		}
	}
	return lb
}

func withStrategy(kind string) *LoadBalancerConfig {
	c := DefaultLoadBalancerConfig()
	c.Strategy = kind
	return c
}

// pickCounts makes n picks, releasing each at once, and counts them by id.
func pickCounts(t testing.TB, lb *LoadBalancer, ctx context.Context, n int) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for range n {
		e, err := lb.Pick(ctx)
		if err != nil {
			t.Fatal(err)
		}
		counts[e.ID]++
		lb.Release(e)
	}
	return counts
}

func TestRoundRobinSpreadsEvenly(t *testing.T) {
	lb := newTestLB(t, withStrategy(RoundRobin), 1, 1, 1)
	got := pickCounts(t, lb, context.Background(), 300)
	want := map[string]int{"s1": 100, "s2": 100, "s3": 100}
	if !maps.Equal(got, want) {
		t.Fatalf("counts = %v, want %v", got, want)
	}
}

func TestRandomCoversAllRoughlyEvenly(t *testing.T) {
	lb := newTestLB(t, withStrategy(Random), 1, 1, 1, 1)
	got := pickCounts(t, lb, context.Background(), 40000)
	for id, n := range got {
		if n < 9000 || n > 11000 {
			t.Errorf("%s got %d of 40000 picks, want about 10000", id, n)
		}
	}
	if len(got) != 4 {
		t.Fatalf("picked %d distinct endpoints, want 4: %v", len(got), got)
	}
}

func TestWeightedExactInEveryWindow(t *testing.T) {
	for _, weights := range [][]int{{5, 2, 1}, {3, 1}, {1, 1, 1}, {10, 20, 30}, {7, 11, 13, 1}} {
		t.Run(fmt.Sprint(weights), func(t *testing.T) {
			lb := newTestLB(t, withStrategy(Weighted), weights...)
			sum := 0
			for _, w := range weights {
				sum += w
			}
			var seq []string
			for range 3 * sum {
				e, _ := lb.Pick(context.Background())
				lb.Release(e)
				seq = append(seq, e.ID)
			}
			// Every window of sum consecutive picks holds exactly the weights.
			for start := 0; start+sum <= len(seq); start++ {
				counts := map[string]int{}
				for _, id := range seq[start : start+sum] {
					counts[id]++
				}
				for i, w := range weights {
					id := fmt.Sprintf("s%d", i+1)
					if counts[id] != w {
						t.Fatalf("window at %d: %s picked %d times, want %d (seq %v)", start, id, counts[id], w, seq)
					}
				}
			}
		})
	}
}

func TestWeightedInterleavesSmoothly(t *testing.T) {
	lb := newTestLB(t, withStrategy(Weighted), 5, 2, 1)
	// Smooth means the light endpoints are spread out, never bunched: the
	// heavy endpoint is never picked more than 3 times in a row for 5/2/1.
	run, maxRun := 0, 0
	for range 800 {
		e, _ := lb.Pick(context.Background())
		lb.Release(e)
		if e.ID == "s1" {
			run++
			maxRun = max(maxRun, run)
		} else {
			run = 0
		}
	}
	if maxRun > 3 {
		t.Fatalf("s1 picked %d times in a row, want at most 3", maxRun)
	}
}

func TestWeightedLiveScheduleForHugePeriods(t *testing.T) {
	// 40 coprime-ish weights near the maximum make a period beyond the table.
	weights := make([]int, 40)
	sum := 0
	for i := range weights {
		weights[i] = MaxWeight - i
		sum += weights[i]
	}
	if sum <= maxScheduleLen {
		t.Fatalf("period %d does not exceed the table limit", sum)
	}
	lb := newTestLB(t, withStrategy(Weighted), weights...)
	if lb.current().getPicker().(*weightedPicker).live == nil {
		t.Fatal("expected the live schedule")
	}
	got := pickCounts(t, lb, context.Background(), sum)
	for i, w := range weights {
		if id := fmt.Sprintf("s%d", i+1); got[id] != w {
			t.Fatalf("%s picked %d times in one period, want %d", id, got[id], w)
		}
	}
}

func TestLeastConnectionsPrefersIdleAndSharesTies(t *testing.T) {
	lb := newTestLB(t, withStrategy(LeastConnections), 1, 1, 1)
	// Equal load: released at once, so every pick sees a tie.
	got := pickCounts(t, lb, context.Background(), 300)
	if !maps.Equal(got, map[string]int{"s1": 100, "s2": 100, "s3": 100}) {
		t.Fatalf("tied picks = %v, want 100 each", got)
	}
	// Hold two calls on s1 and one on s2: the next pick must be s3.
	s1, _ := lb.Endpoint("s1")
	s2, _ := lb.Endpoint("s2")
	s1.load.Add(2)
	s2.load.Add(1)
	for range 10 {
		e, _ := lb.Pick(context.Background())
		if e.ID != "s3" {
			t.Fatalf("picked %s with loads s1=2 s2=1 s3=0, want s3", e.ID)
		}
		lb.Release(e)
	}
}

func TestLeastConnectionsSampledChoices(t *testing.T) {
	cfg := withStrategy(LeastConnections)
	cfg.ChoiceCount = 2
	weights := slices.Repeat([]int{1}, 10)
	lb := newTestLB(t, cfg, weights...)
	// Load every endpoint but s10 heavily: two random choices find the idle
	// one often, and never pick a loaded one over it when both are drawn.
	for _, e := range lb.Endpoints() {
		if e.ID != "s10" {
			e.load.Add(100)
		}
	}
	got := pickCounts(t, lb, context.Background(), 1000)
	if got["s10"] < 100 {
		t.Fatalf("idle endpoint got %d of 1000 picks, want far more than its 1/10: %v", got["s10"], got)
	}
}

func TestUnhealthySkippedAndNoHealthyError(t *testing.T) {
	for _, kind := range StrategyKinds() {
		t.Run(kind, func(t *testing.T) {
			lb := newTestLB(t, withStrategy(kind), 3, 2, 1)
			must(t, lb.SetHealth("s2", HealthUnhealthy))
			got := pickCounts(t, lb, context.Background(), 600)
			if got["s2"] != 0 {
				t.Fatalf("unhealthy s2 was picked %d times", got["s2"])
			}
			must(t, lb.SetHealth("s1", HealthUnhealthy))
			must(t, lb.SetHealth("s3", HealthUnhealthy))
			_, err := lb.Pick(context.Background())
			if !errors.Is(err, ErrNoHealthyServers) {
				t.Fatalf("err = %v, want ErrNoHealthyServers", err)
			}
			if want := `no healthy servers for service "peervault" (all 3 endpoints are unhealthy)`; err.Error() != want {
				t.Fatalf("err = %q, want %q", err, want)
			}
			must(t, lb.SetHealth("s3", HealthHealthy))
			if e, err := lb.Pick(context.Background()); err != nil || e.ID != "s3" {
				t.Fatalf("after recovery picked %v, %v; want s3", e, err)
			}
		})
	}
}

func TestRetryAvoidsTriedEndpoints(t *testing.T) {
	for _, kind := range StrategyKinds() {
		t.Run(kind, func(t *testing.T) {
			lb := newTestLB(t, withStrategy(kind), 5, 2, 1)
			s1, _ := lb.Endpoint("s1")
			s2, _ := lb.Endpoint("s2")
			for range 100 {
				e, err := lb.PickExcluding(context.Background(), []*Endpoint{s1})
				must(t, err)
				lb.Release(e)
				if e == s1 {
					t.Fatal("retry went back to the tried endpoint")
				}
				e, _ = lb.PickExcluding(context.Background(), []*Endpoint{s1, s2})
				lb.Release(e)
				if e.ID != "s3" {
					t.Fatalf("with s1 and s2 tried, picked %s", e.ID)
				}
			}
			// With every endpoint tried, a pick still succeeds.
			s3, _ := lb.Endpoint("s3")
			if _, err := lb.PickExcluding(context.Background(), []*Endpoint{s1, s2, s3}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// fakeClock is a settable clock for session expiry.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newStickyLB(t *testing.T, clock *fakeClock) *LoadBalancer {
	cfg := DefaultLoadBalancerConfig()
	cfg.StickySession = true
	cfg.SessionTimeout = time.Minute
	cfg.Service = "peervault"
	lb, err := NewLoadBalancer(cfg, nil, WithClock(clock.now), WithSeed(7))
	must(t, err)
	for i := range 3 {
		must(t, lb.AddServer(fmt.Sprintf("s%d", i+1), "127.0.0.1", 50051+i, 1))
	}
	return lb
}

func pickID(t *testing.T, lb *LoadBalancer, ctx context.Context) string {
	t.Helper()
	e, err := lb.Pick(ctx)
	must(t, err)
	lb.Release(e)
	return e.ID
}

func TestStickySessionBindsRenewsAndExpires(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	lb := newStickyLB(t, clock)
	ctx := WithSession(context.Background(), "user123")
	first := pickID(t, lb, ctx)
	for range 50 {
		clock.advance(50 * time.Second) // under the timeout: each use renews
		if got := pickID(t, lb, ctx); got != first {
			t.Fatalf("session moved from %s to %s while in use", first, got)
		}
	}
	if n := lb.GetServerStats().ActiveSessions; n != 1 {
		t.Fatalf("active sessions = %d, want 1", n)
	}
	clock.advance(61 * time.Second)
	if n := lb.GetServerStats().ActiveSessions; n != 0 {
		t.Fatalf("active sessions after expiry = %d, want 0", n)
	}
	// An expired session is rebound by the strategy: over several fresh
	// sessions round robin must reach more than one endpoint.
	seen := map[string]bool{}
	for i := range 6 {
		seen[pickID(t, lb, WithSession(context.Background(), fmt.Sprint("u", i)))] = true
	}
	if len(seen) != 3 {
		t.Fatalf("new sessions landed on %v, want all three endpoints", seen)
	}
}

func TestStickySessionRebindsWhenEndpointFailsOrLeaves(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	lb := newStickyLB(t, clock)
	ctx := WithSession(context.Background(), "user123")
	first := pickID(t, lb, ctx)
	must(t, lb.SetHealth(first, HealthUnhealthy))
	second := pickID(t, lb, ctx)
	if second == first {
		t.Fatal("session stayed on an unhealthy endpoint")
	}
	// Recovery of the first does not pull the session back: it stays put.
	must(t, lb.SetHealth(first, HealthHealthy))
	if got := pickID(t, lb, ctx); got != second {
		t.Fatalf("session moved back to %s after recovery, want it on %s", got, second)
	}
	must(t, lb.RemoveServer(second))
	third := pickID(t, lb, ctx)
	if third == second {
		t.Fatal("session stayed on a removed endpoint")
	}
	if got := pickID(t, lb, ctx); got != third {
		t.Fatalf("session did not stick after rebinding: %s then %s", third, got)
	}
}

func TestStickyIgnoredWithoutSessionOrWhenDisabled(t *testing.T) {
	lb := newTestLB(t, nil, 1, 1, 1)
	ctx := WithSession(context.Background(), "user123")
	got := pickCounts(t, lb, ctx, 300)
	if len(got) != 3 {
		t.Fatalf("sticky sessions are off, yet picks went only to %v", got)
	}
}

func TestServerStatsJSONKeys(t *testing.T) {
	lb := newTestLB(t, withStrategy(Weighted), 5, 2, 1)
	must(t, lb.SetHealth("s1", HealthHealthy))
	must(t, lb.SetHealth("s2", HealthUnhealthy))
	e, _ := lb.Pick(context.Background()) // left in flight
	st := lb.GetServerStats()
	if st.TotalServers != 3 || st.HealthyServers != 1 || st.UnhealthyServers != 1 || st.UnknownServers != 1 || st.TotalConnections != 1 {
		t.Fatalf("stats = %+v", st)
	}
	b, err := json.Marshal(st)
	must(t, err)
	var m map[string]any
	must(t, json.Unmarshal(b, &m))
	for _, k := range []string{"total_servers", "healthy_servers", "unhealthy_servers", "unknown_servers", "total_connections", "strategy", "sticky_session", "active_sessions", "servers"} {
		if _, ok := m[k]; !ok {
			t.Errorf("stats JSON lacks %q: %s", k, b)
		}
	}
	servers := m["servers"].([]any)
	if h := servers[1].(map[string]any)["health"]; h != "unhealthy" {
		t.Errorf("s2 health in JSON = %v, want \"unhealthy\"", h)
	}
	lb.Release(e)
	if n := lb.GetServerStats().TotalConnections; n != 0 {
		t.Fatalf("connections after release = %d", n)
	}
}

func TestBadInputIsRejected(t *testing.T) {
	lb := newTestLB(t, nil, 1)
	cases := []struct {
		name string
		err  error
	}{
		{"duplicate", lb.AddServer("s1", "h", 1, 1)},
		{"zero weight", lb.AddServer("x", "h", 1, 0)},
		{"big weight", lb.AddServer("x", "h", 1, MaxWeight+1)},
		{"bad port", lb.AddServer("x", "h", 70000, 1)},
		{"no host", lb.AddServer("x", "", 1, 1)},
		{"remove unknown", lb.RemoveServer("nope")},
		{"health unknown", lb.SetHealth("nope", HealthHealthy)},
	}
	for _, c := range cases {
		if c.err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
	if _, err := NewLoadBalancer(&LoadBalancerConfig{Strategy: "fastest"}, nil); err == nil {
		t.Error("unknown strategy accepted")
	}
	if _, err := NewStrategy(StrategyConfig{Kind: RoundRobin, ChoiceCount: 2}, StrategyOptions{}); err == nil {
		t.Error("choice_count accepted for round_robin")
	}
}

func TestPickAllocatesNothing(t *testing.T) {
	for _, kind := range StrategyKinds() {
		lb := newTestLB(t, withStrategy(kind), 5, 2, 1)
		ctx := context.Background()
		allocs := testing.AllocsPerRun(1000, func() {
			e, _ := lb.Pick(ctx)
			lb.Release(e)
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per pick, want 0", kind, allocs)
		}
	}
	for _, kind := range []string{RingHash, Maglev} {
		lb, err := New(Config{Strategy: StrategyConfig{Kind: kind, HashBalanceFactor: 150}}, nil)
		must(t, err)
		must(t, lb.Sync(specs(10)))
		ctx := context.Background()
		var key uint64
		allocs := testing.AllocsPerRun(1000, func() {
			key += 0x9e3779b97f4a7c15
			e, _ := lb.PickHash(ctx, key, nil)
			lb.Release(e)
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per keyed pick, want 0", kind, allocs)
		}
	}
	clock := &fakeClock{t: time.Unix(0, 0)}
	lb := newStickyLB(t, clock)
	ctx := WithSession(context.Background(), "user123")
	pickID(t, lb, ctx)
	if allocs := testing.AllocsPerRun(1000, func() { e, _ := lb.Pick(ctx); lb.Release(e) }); allocs != 0 {
		t.Errorf("sticky: %v allocations per pick of a bound session, want 0", allocs)
	}
}

// TestConcurrentPicksAndChanges is for the race detector: picks, health flips
// and membership changes at once must keep counts consistent.
func TestConcurrentPicksAndChanges(t *testing.T) {
	for _, kind := range StrategyKinds() {
		t.Run(kind, func(t *testing.T) {
			cfg := withStrategy(kind)
			cfg.StickySession = kind != RingHash && kind != Maglev // which hash the session instead
			lb := newTestLB(t, cfg, 3, 2, 1, 1)
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Go(func() {
					ctx := WithSession(context.Background(), fmt.Sprint("sess", g))
					for i := range 2000 {
						c := ctx
						if i%2 == 0 {
							c = context.Background()
						}
						e, err := lb.Pick(c)
						if err != nil {
							continue // every endpoint may be unhealthy for a moment
						}
						lb.Release(e)
					}
				})
			}
			wg.Go(func() {
				for i := range 300 {
					id := fmt.Sprintf("s%d", i%4+1)
					_ = lb.SetHealth(id, HealthStatus(i%3))
					if i%50 == 0 {
						_ = lb.RemoveServer("s4")
						_ = lb.AddServer("s4", "127.0.0.1", 50054, 1)
					}
				}
			})
			wg.Wait()
			if n := lb.GetServerStats().TotalConnections; n != 0 {
				t.Fatalf("in-flight count after all releases = %d, want 0", n)
			}
		})
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestSyncAddsRemovesAndReplaces(t *testing.T) {
	lb := newTestLB(t, withStrategy(Weighted), 1, 1)
	var seen [][]string
	cancel := lb.Subscribe(func(all []*Endpoint) {
		ids := []string{}
		for _, e := range all {
			ids = append(ids, e.ID+"="+e.Address)
		}
		seen = append(seen, ids)
	})
	defer cancel()
	s1, _ := lb.Endpoint("s1")
	must(t, lb.SetHealth("s1", HealthHealthy))
	must(t, lb.Sync([]EndpointSpec{
		{ID: "s1", Host: "127.0.0.1", Port: 50051, Weight: 1}, // unchanged
		{ID: "s2", Host: "127.0.0.1", Port: 60000, Weight: 1}, // moved
		{ID: "s3", Host: "127.0.0.1", Port: 50053, Weight: 3}, // new
	}))
	if e, _ := lb.Endpoint("s1"); e != s1 || e.Health() != HealthHealthy {
		t.Fatal("an unchanged endpoint was replaced or lost its health")
	}
	if e, _ := lb.Endpoint("s2"); e.Port != 60000 {
		t.Fatalf("s2 not updated: %v", e)
	}
	got := pickCounts(t, lb, context.Background(), 500)
	if got["s1"] != 100 || got["s2"] != 100 || got["s3"] != 300 {
		t.Fatalf("after sync picks went %v", got)
	}
	// The same snapshot again changes nothing and tells no one.
	before := len(seen)
	must(t, lb.Sync([]EndpointSpec{
		{ID: "s1", Host: "127.0.0.1", Port: 50051, Weight: 1},
		{ID: "s2", Host: "127.0.0.1", Port: 60000, Weight: 1},
		{ID: "s3", Host: "127.0.0.1", Port: 50053, Weight: 3},
	}))
	if len(seen) != before {
		t.Fatal("an identical snapshot notified subscribers")
	}
	must(t, lb.Sync(nil))
	if _, err := lb.Pick(context.Background()); !errors.Is(err, ErrNoHealthyServers) {
		t.Fatalf("empty sync: %v", err)
	}
	if err := lb.Sync([]EndpointSpec{{ID: "x", Host: "h", Port: 1, Weight: 1}, {ID: "x", Host: "h", Port: 2, Weight: 1}}); !errors.Is(err, ErrDuplicateServer) {
		t.Fatalf("duplicate ids: %v", err)
	}
}

func TestDiscoveryHealthCombinesWithActiveHealth(t *testing.T) {
	lb := newTestLB(t, withStrategy(RoundRobin))
	must(t, lb.Sync([]EndpointSpec{
		{ID: "a", Host: "h", Port: 1, Weight: 1, Health: HealthHealthy},
		{ID: "b", Host: "h", Port: 2, Weight: 1, Health: HealthUnhealthy},
		{ID: "c", Host: "h", Port: 3, Weight: 1},
	}))
	if got := pickCounts(t, lb, context.Background(), 30); got["b"] != 0 || got["a"] != 15 || got["c"] != 15 {
		t.Fatalf("with b reported unhealthy: %v", got)
	}
	st := lb.GetServerStats()
	if st.HealthyServers != 1 || st.UnhealthyServers != 1 || st.UnknownServers != 1 {
		t.Fatalf("stats %+v", st.HealthCounts)
	}
	// Active checks saying healthy do not override discovery's unhealthy.
	must(t, lb.SetHealth("b", HealthHealthy))
	if e, _ := lb.Endpoint("b"); e.Health() != HealthUnhealthy {
		t.Fatal("discovery's unhealthy was overridden")
	}
	// Discovery recovers b: it serves again, without a membership change.
	must(t, lb.Sync([]EndpointSpec{
		{ID: "a", Host: "h", Port: 1, Weight: 1, Health: HealthHealthy},
		{ID: "b", Host: "h", Port: 2, Weight: 1, Health: HealthHealthy},
		{ID: "c", Host: "h", Port: 3, Weight: 1},
	}))
	if got := pickCounts(t, lb, context.Background(), 30); got["b"] != 10 {
		t.Fatalf("after b recovered: %v", got)
	}
	// Active checks saying unhealthy take an endpoint out whatever discovery says.
	must(t, lb.SetHealth("a", HealthUnhealthy))
	if got := pickCounts(t, lb, context.Background(), 30); got["a"] != 0 {
		t.Fatalf("a is unhealthy by its checks yet served %v", got)
	}
}

// The bucketed table is exactly the sequence the EDF heap emits.
func TestEDFTableMatchesTheHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		n := 1 + rng.IntN(40)
		weights := make([]uint64, n)
		var period uint64
		for i := range weights {
			weights[i] = 1 + rng.Uint64N(uint64(1+trial%7*9))
			period += weights[i]
		}
		table := edfTable(weights, period)
		heap := newEDF(weights)
		for i, got := range table {
			if want := heap.next(); int(got) != want {
				t.Fatalf("weights %v: slot %d is %d, the heap says %d", weights, i, got, want)
			}
		}
	}
}

// Discovery's changes are logged a line per server, each with the
// service: the first endpoints as one line, then additions, removals,
// changes and health reported by discovery.
func TestSyncLogsEveryChange(t *testing.T) {
	var buf bytes.Buffer
	cfg := DefaultConfig()
	cfg.Service = "peervault"
	b, err := New(cfg, slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	must(t, err)
	must(t, b.Sync([]EndpointSpec{{ID: "a", Host: "10.0.0.1", Port: 1, Weight: 1}, {ID: "b", Host: "10.0.0.2", Port: 1, Weight: 1}}))
	must(t, b.Sync([]EndpointSpec{{ID: "a", Host: "10.0.0.1", Port: 1, Weight: 2}, {ID: "c", Host: "10.0.0.3", Port: 1, Weight: 1, Health: HealthUnhealthy}}))
	must(t, b.Sync([]EndpointSpec{{ID: "a", Host: "10.0.0.1", Port: 1, Weight: 2}, {ID: "c", Host: "10.0.0.3", Port: 1, Weight: 1}}))
	for _, want := range []string{
		`msg="servers discovered" service=peervault endpoints=2`,
		`msg="server changed by discovery" service=peervault server=a address=10.0.0.1:1 weight=2`,
		`msg="server removed by discovery" service=peervault server=b address=10.0.0.2:1`,
		`msg="server added by discovery" service=peervault server=c address=10.0.0.3:1`,
		`msg="server health changed by discovery" service=peervault server=c address=10.0.0.3:1 from=unhealthy to=unknown`,
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("no line with %s in:\n%s", want, buf.String())
		}
	}
}
