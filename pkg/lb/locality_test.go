package lb

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
)

// newZoneLB balances strategy kind over one endpoint per zone listed
// (ids a1, a2, b1…), routed by loc.
func newZoneLB(t testing.TB, kind string, loc *Locality, zones ...string) *LoadBalancer {
	return newZoneLBSeeded(t, 3, kind, loc, zones...)
}

// newZoneLBSeeded is newZoneLB with a seed; 0 draws as in production.
func newZoneLBSeeded(t testing.TB, seed uint64, kind string, loc *Locality, zones ...string) *LoadBalancer {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Service, cfg.Strategy.Kind, cfg.Locality = "peervault", kind, loc
	var opts []Option
	if seed != 0 {
		opts = append(opts, WithSeed(seed))
	}
	b, err := New(cfg, nil, opts...)
	must(t, err)
	count := map[string]int{}
	for i, z := range zones {
		count[z]++
		must(t, b.AddEndpoint(EndpointSpec{ID: fmt.Sprintf("%s%d", z, count[z]), Host: "127.0.0.1", Port: 50051 + i, Weight: 1, Zone: z}))
	}
	return b
}

// zoneShares makes n picks and returns each zone's share of them.
func zoneShares(t testing.TB, b *LoadBalancer, n int) map[string]float64 {
	t.Helper()
	counts := map[string]int{}
	for range n {
		e, err := b.Pick(context.Background())
		must(t, err)
		counts[e.Zone]++
		b.Release(e)
	}
	shares := map[string]float64{}
	for z, c := range counts {
		shares[z] = float64(c) / float64(n)
	}
	return shares
}

func setHealth(t testing.TB, b *LoadBalancer, status HealthStatus, ids ...string) {
	t.Helper()
	for _, id := range ids {
		must(t, b.SetHealth(id, status))
	}
}

// Three endpoints in each of two zones, the client in zone a: every call
// stays in a while all are healthy; with two of a's three down, a keeps
// what its healthy share allows (1/4 of the healthy for 1/2 of the
// clients: half the calls, Envoy's formula) and the rest spills to b;
// with a gone, everything goes to b; after a's recovery, back to a.
func TestPreferLocalSpillsOverAsEnvoyDoes(t *testing.T) {
	for _, kind := range []string{RoundRobin, Random, Weighted, LeastConnections, PeakEWMA} {
		t.Run(kind, func(t *testing.T) {
			b := newZoneLB(t, kind, &Locality{Mode: PreferLocal, LocalZone: "a"}, "a", "a", "a", "b", "b", "b")
			if got := zoneShares(t, b, 10_000)["a"]; got < 0.99 {
				t.Fatalf("all healthy: %.1f%% of calls stayed in zone a, want at least 99%%", 100*got)
			}
			setHealth(t, b, HealthUnhealthy, "a1", "a2")
			if got := zoneShares(t, b, 20_000)["a"]; math.Abs(got-0.5) > 0.02 {
				t.Fatalf("two of a's three down: %.1f%% of calls in zone a, want 50%% ± 2", 100*got)
			}
			setHealth(t, b, HealthUnhealthy, "a3")
			if got := zoneShares(t, b, 1000)["b"]; got != 1 {
				t.Fatalf("zone a down: %.1f%% of calls in zone b, want all", 100*got)
			}
			setHealth(t, b, HealthHealthy, "a1", "a2", "a3")
			if got := zoneShares(t, b, 1000)["a"]; got < 0.99 {
				t.Fatalf("zone a back: %.1f%% of calls in zone a", 100*got)
			}
		})
	}
}

// The clients' spread sets each zone's fair share: a zone with most of
// the clients keeps only what its healthy endpoints allow.
func TestPreferLocalFollowsTheClientsSpread(t *testing.T) {
	zones := []string{"a", "a", "a", "b", "b", "b"}
	few := newZoneLB(t, RoundRobin, &Locality{Mode: PreferLocal, LocalZone: "a", ClientZones: map[string]float64{"a": 1, "b": 3}}, zones...)
	if got := zoneShares(t, few, 1000)["a"]; got != 1 {
		t.Fatalf("a quarter of the clients in a: %.1f%% stayed there, want all", 100*got)
	}
	many := newZoneLB(t, RoundRobin, &Locality{Mode: PreferLocal, LocalZone: "a", ClientZones: map[string]float64{"a": 3, "b": 1}}, zones...)
	// Half the healthy endpoints for three quarters of the clients: 2/3.
	if got := zoneShares(t, many, 30_000)["a"]; math.Abs(got-2.0/3) > 0.02 {
		t.Fatalf("three quarters of the clients in a: %.1f%% stayed there, want 66.7%% ± 2", 100*got)
	}
	// Below min_cluster_size, zones do not matter.
	small := newZoneLB(t, RoundRobin, &Locality{Mode: PreferLocal, LocalZone: "a"}, "a", "a", "b", "b")
	if got := zoneShares(t, small, 1000)["a"]; math.Abs(got-0.5) > 0.01 {
		t.Fatalf("4 endpoints, under min_cluster_size 6: %.1f%% in a, want 50%%", 100*got)
	}
}

// Priority levels take the calls in order while healthy enough, as
// Envoy's with the overprovisioning factor 1.4.
func TestPrioritiesFailOverByHealthyShare(t *testing.T) {
	b := newZoneLB(t, RoundRobin, &Locality{Mode: Priorities, Priorities: []string{"a", "b", AnyZone}}, "a", "a", "a", "b", "b", "b", "c", "")
	if got := zoneShares(t, b, 1000)["a"]; got != 1 {
		t.Fatalf("all healthy: %.1f%% to the first level, want all", 100*got)
	}
	setHealth(t, b, HealthUnhealthy, "a1")
	// 1.4 × 2/3 = 93.3% available: a keeps 93.3%, b takes the rest.
	if got := zoneShares(t, b, 30_000); math.Abs(got["a"]-1.4*2/3) > 0.02 || math.Abs(got["b"]-(1-1.4*2/3)) > 0.02 {
		t.Fatalf("a at 2/3: shares %v, want a 93.3%% and b 6.7%%", got)
	}
	setHealth(t, b, HealthUnhealthy, "a2", "b1", "b2", "b3")
	// a 1.4/3 = 46.7%, b 0, the rest ("c" and no zone) 100%.
	got := zoneShares(t, b, 30_000)
	if math.Abs(got["a"]-1.4/3) > 0.02 || math.Abs(got["c"]+got[""]-(1-1.4/3)) > 0.02 {
		t.Fatalf("a at 1/3, b down: shares %v, want a 46.7%% and the others 53.3%%", got)
	}
}

// A retry that has tried every endpoint of its zone fails over to
// another zone.
func TestLocalityRetriesLeaveAnExhaustedZone(t *testing.T) {
	b := newZoneLB(t, RoundRobin, &Locality{Mode: PreferLocal, LocalZone: "a"}, "a", "a", "a", "b", "b", "b")
	var tried []*Endpoint
	for range 3 {
		e, err := b.PickExcluding(context.Background(), tried)
		must(t, err)
		if e.Zone != "a" {
			t.Fatalf("attempt %d left zone a with endpoints untried there", len(tried)+1)
		}
		tried = append(tried, e)
		b.Release(e)
	}
	e, err := b.PickExcluding(context.Background(), tried)
	must(t, err)
	if e.Zone != "b" {
		t.Fatalf("with zone a tried through, the retry went to %s", e.ID)
	}
	b.Release(e)
}

// Panic mode balances over every endpoint, zones aside, as Envoy does.
func TestLocalityOffInPanic(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Service, cfg.PanicThreshold = "peervault", 50
	cfg.Locality = &Locality{Mode: PreferLocal, LocalZone: "a"}
	b, err := New(cfg, nil, WithSeed(3))
	must(t, err)
	for i, z := range []string{"a", "a", "a", "b", "b", "b"} {
		must(t, b.AddEndpoint(EndpointSpec{ID: fmt.Sprint(z, i), Host: "h", Port: 1 + i, Weight: 1, Zone: z}))
	}
	setHealth(t, b, HealthUnhealthy, "a0", "a1", "b3", "b4")
	if got := zoneShares(t, b, 6000)["a"]; math.Abs(got-0.5) > 0.02 {
		t.Fatalf("in panic: %.1f%% in a, want half (all six endpoints alike)", 100*got)
	}
}

func TestLocalitySettings(t *testing.T) {
	for _, tc := range []struct {
		kind string
		loc  Locality
		want string
	}{
		{RoundRobin, Locality{Mode: "nearest", LocalZone: "a"}, `mode must be "prefer_local" or "priorities"`},
		{Maglev, Locality{Mode: PreferLocal, LocalZone: "a"}, "does not apply to maglev"},
		{RoundRobin, Locality{Mode: PreferLocal}, "needs local_zone"},
		{RoundRobin, Locality{Mode: Priorities}, "needs priorities"},
		{RoundRobin, Locality{Mode: Priorities, Priorities: []string{"a", "a"}}, `zone "a" is listed twice`},
		{RoundRobin, Locality{Mode: Priorities, Priorities: []string{"a"}, OverprovisioningFactor: 99}, "from 100 to 1000"},
		{RoundRobin, Locality{Mode: PreferLocal, LocalZone: "a", OverprovisioningFactor: 140}, "applies to mode"},
		{RoundRobin, Locality{Mode: PreferLocal, LocalZone: "a", ClientZones: map[string]float64{"a": 0}}, "must be above 0"},
	} {
		cfg := DefaultConfig()
		cfg.Strategy.Kind, cfg.Locality = tc.kind, &tc.loc
		if _, err := New(cfg, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.loc, err, tc.want)
		}
	}
}

// BenchmarkPickLocality: a round-robin pick and its release over 2 zones
// of 3 endpoints (and of 500), without a locality block, with every call
// local, and with half of them spilling over (a zone drawn per pick).
func BenchmarkPickLocality(b *testing.B) {
	for _, per := range []int{3, 500} {
		zones := make([]string, 0, 2*per)
		for range per {
			zones = append(zones, "a", "b")
		}
		for _, tc := range []struct {
			name string
			loc  *Locality
			down int
		}{
			{"no_locality", nil, 0},
			{"all_local", &Locality{Mode: PreferLocal, LocalZone: "a"}, 0},
			{"spill_over", &Locality{Mode: PreferLocal, LocalZone: "a"}, per * 2 / 3},
		} {
			b.Run(fmt.Sprintf("%s/n=%d", tc.name, 2*per), func(b *testing.B) {
				lb := newZoneLBSeeded(b, 0, RoundRobin, tc.loc, zones...) // unseeded, as in production
				for i := range tc.down {
					must(b, lb.SetHealth(fmt.Sprintf("a%d", i+1), HealthUnhealthy))
				}
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					e, _ := lb.Pick(ctx)
					lb.Release(e)
				}
			})
		}
	}
}

// On a channel, zones' shares follow health, not connection state: an
// endpoint of the local zone still connecting (left out of the subset
// picks are made from) spills nothing over.
func TestLocalityWithinAChannelsReadyEndpoints(t *testing.T) {
	b := newZoneLB(t, RoundRobin, &Locality{Mode: PreferLocal, LocalZone: "a"}, "a", "a", "a", "b", "b", "b")
	var ready []*Endpoint
	for _, e := range b.Endpoints() {
		if e.ID != "a1" {
			ready = append(ready, e)
		}
	}
	sub := b.NewSubset()
	sub.Allow(ready)
	for range 1000 {
		e, err := sub.Pick(context.Background(), nil)
		must(t, err)
		if e.Zone != "a" || e.ID == "a1" {
			t.Fatalf("picked %s", e.ID)
		}
		b.Release(e)
	}
}
