package sim

import (
	"math"
	"testing"
	"time"

	"github.com/peervault/pvlb/pkg/config"
	"github.com/peervault/pvlb/pkg/latency"
	"github.com/peervault/pvlb/pkg/lb"
)

// With Zipf-distributed keys the hottest key's server would hold many
// times its share; hash_balance_factor 125 keeps every server, each time
// it is given a request, at most 1.25 × the mean in flight + 1.
func TestBoundedLoadWithSkewedKeys(t *testing.T) {
	for _, kind := range []string{lb.RingHash, lb.Maglev} {
		for _, factor := range []int{0, 125} {
			c := withBase(kind, Config{Servers: servers(1, 1, 1, 1, 1, 1, 1, 1, 1, 1), Requests: 40000, RPS: 20000,
				Keys: 100000, KeySkew: 1.1, Seed: 7})
			c.Balancer.Strategy.HashBalanceFactor = factor
			c.Retry.MaxRetries = 0
			worst := 0.0
			c.onPick = func(s *simulation, idx int32) {
				total := 0
				for _, sv := range s.servers {
					total += sv.busy + len(sv.queue)
				}
				sv := s.servers[idx]
				mean := float64(total) / float64(len(s.servers))
				worst = max(worst, float64(sv.busy+len(sv.queue))-1.25*mean)
			}
			run(t, c)
			t.Logf("%s, hash_balance_factor %d: most in flight on a server over 1.25 × the mean: %.2f", kind, factor, worst)
			switch {
			case factor != 0 && worst > 1:
				t.Errorf("%s: a server held %.2f over 1.25 × the mean in flight, want at most 1", kind, worst)
			case factor == 0 && worst < 5:
				t.Errorf("%s without a bound: only %.2f over 1.25 × the mean; the keys are not skewed enough to test the bound", kind, worst)
			}
		}
	}
}

// A server caches the keys it serves: hashing sends a key to the same
// server, so with uniform keys each server holds a larger part of the
// keys it sees, and hits more, than round robin's; hits and misses count
// every keyed attempt on a caching server, and the same run repeats.
func TestCachingServersRewardHashing(t *testing.T) {
	rates := map[string]float64{}
	for _, kind := range []string{lb.RoundRobin, lb.RingHash, lb.Maglev} {
		srv := servers(1, 1, 1, 1)
		miss := latency.Model{Kind: latency.Fixed, A: 40e6}
		for i := range srv {
			srv[i].Behaviour = config.Behaviour{Latency: latency.Default, CacheKeys: 500, MissLatency: &miss}
		}
		c := withBase(kind, Config{Servers: srv, Requests: 20000, RPS: 1000, Keys: 2000, Seed: 3})
		r := run(t, c)
		if r.CacheHits+r.CacheMisses != r.Requests {
			t.Errorf("%s: %d hits and %d misses of %d keyed requests", kind, r.CacheHits, r.CacheMisses, r.Requests)
		}
		rate, _ := r.CacheHitRate()
		rates[kind] = rate
		again := run(t, c)
		if again.CacheHits != r.CacheHits || again.Latency != r.Latency {
			t.Errorf("%s: the same seed gave %d hits, then %d", kind, r.CacheHits, again.CacheHits)
		}
	}
	t.Logf("cache hit rates: %v", rates)
	// 500 of 2,000 keys per server: about 25% at random; a server that
	// owns a quarter of the keys holds all of them.
	if rates[lb.RoundRobin] > 0.35 || rates[lb.RingHash] < 0.8 || rates[lb.Maglev] < 0.8 {
		t.Errorf("hit rates %v: want round robin near 25%%, hashing above 80%%", rates)
	}
}

func TestKeySettingsAreChecked(t *testing.T) {
	for _, c := range []Config{
		{Keys: -1}, {Keys: MaxKeys + 1}, {Keys: 10, KeySkew: 1}, {KeySkew: 1.5},
	} {
		cfg := withBase(lb.RingHash, Config{Servers: servers(1), Requests: 10, RPS: 10, Keys: c.Keys, KeySkew: c.KeySkew})
		if _, err := Run(cfg); err == nil {
			t.Errorf("keys %d, skew %g: accepted", c.Keys, c.KeySkew)
		}
	}
}

// Servers of capacities 8, 16 and 32 (each answer takes 10ms) report their
// load with every answer; weighted_round_robin turns the reports into
// weights 1:2:4 once the blackout period has passed, and keeps to them
// with reports every second out of band too.
func TestWeightedRoundRobinInTheSimulator(t *testing.T) {
	for _, oob := range []bool{false, true} {
		srv := servers(1, 1, 1)
		for i, capacity := range []int{8, 16, 32} {
			srv[i].Latency = latency.Model{Kind: latency.Fixed, A: 10e6}
			srv[i].Capacity = capacity
		}
		c := withBase(lb.WeightedRoundRobin, Config{Servers: srv, Requests: 80000, RPS: 2000, Seed: 5})
		w := &lb.WeightedRoundRobinConfig{BlackoutPeriod: time.Second, WeightUpdatePeriod: 100 * time.Millisecond}
		if oob {
			w.EnableOOBLoadReport, w.OOBReportingPeriod = true, time.Second
		}
		c.Balancer.Strategy.WeightedRoundRobin = w
		r := run(t, c)
		got := []float64{r.Servers[0].Share, r.Servers[1].Share, r.Servers[2].Share}
		t.Logf("out of band %v: shares %.3f %.3f %.3f", oob, got[0], got[1], got[2])
		for i, want := range []float64{1.0 / 7, 2.0 / 7, 4.0 / 7} {
			if math.Abs(got[i]-want) > 0.1*want {
				t.Errorf("out of band %v: server%d's share %.3f, want %.3f within 10%%", oob, i+1, got[i], want)
			}
		}
	}
}
