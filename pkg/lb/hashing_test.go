package lb

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/cespare/xxhash/v2"
)

// newHashLB builds a hashing balancer over n endpoints 10.0.0.1..n:50051,
// added in the order order gives (nil: in order).
func newHashLB(t testing.TB, sc StrategyConfig, n int, order []int) *LoadBalancer {
	t.Helper()
	b, err := New(Config{Service: "peervault", Strategy: sc}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if order == nil {
		order = make([]int, n)
		for i := range order {
			order[i] = i
		}
	}
	for _, i := range order {
		if err := b.AddServer(fmt.Sprintf("s%02d", i+1), fmt.Sprintf("10.0.0.%d", i+1), 50051, 1); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// mapKeys picks each key's endpoint and releases it at once.
func mapKeys(t testing.TB, b *LoadBalancer, keys []uint64) []string {
	t.Helper()
	out := make([]string, len(keys))
	for i, k := range keys {
		e, err := b.PickHash(context.Background(), k, nil)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = e.ID
		b.Release(e)
	}
	return out
}

var hashingKinds = []string{RingHash, Maglev}

// Two balancers built independently, their endpoints added in different
// orders, map every key alike.
func TestHashingClientsAgree(t *testing.T) {
	keys := testKeys()
	for _, kind := range hashingKinds {
		a := mapKeys(t, newHashLB(t, StrategyConfig{Kind: kind}, 10, nil), keys)
		b := mapKeys(t, newHashLB(t, StrategyConfig{Kind: kind}, 10, []int{9, 3, 0, 7, 1, 8, 2, 6, 4, 5}), keys)
		for i := range keys {
			if a[i] != b[i] {
				t.Fatalf("%s: key %d goes to %s on one client and %s on the other", kind, i, a[i], b[i])
			}
		}
	}
}

// An endpoint that fails its health checks or is ejected gives up its own
// keys, each to the next endpoint along the table, and no other key
// moves; when it comes back, so do its keys. Removed from discovery, it
// takes its keys with it and the table is rebuilt: with Maglev few others
// move, with grpc-go's ring more (see TestHashTablesAreStable).
func TestHashingUnhealthyEndpointMovesOnlyItsKeys(t *testing.T) {
	keys := testKeys()
	for _, kind := range hashingKinds {
		t.Run(kind, func(t *testing.T) {
			b := newHashLB(t, StrategyConfig{Kind: kind}, 10, nil)
			before := mapKeys(t, b, keys)
			must(t, b.SetHealth("s04", HealthUnhealthy))
			during := mapKeys(t, b, keys)
			moved := 0
			for i := range keys {
				switch {
				case before[i] == "s04" && during[i] == "s04":
					t.Fatalf("key %d still goes to the unhealthy endpoint", i)
				case before[i] == "s04":
					moved++
				case before[i] != during[i]:
					t.Fatalf("key %d of healthy %s moved to %s", i, before[i], during[i])
				}
			}
			share := float64(moved) / float64(len(keys))
			t.Logf("1 of 10 unhealthy: %.2f%% of keys moved, all its own", 100*share)
			if share > 1.2/10 {
				t.Errorf("%.2f%% of keys moved, over 1.2 × a tenth", 100*share)
			}
			must(t, b.SetHealth("s04", HealthHealthy))
			if again := mapKeys(t, b, keys); !equalStrings(before, again) {
				t.Error("keys did not all come back when the endpoint recovered")
			}

			must(t, b.RemoveServer("s04"))
			removed := mapKeys(t, b, keys)
			must(t, b.AddServer("s04", "10.0.0.4", 50051, 1))
			if again := mapKeys(t, b, keys); !equalStrings(before, again) {
				t.Error("keys did not all come back when the endpoint rejoined")
			}
			others := 0
			for i := range keys {
				if before[i] != "s04" && before[i] != removed[i] {
					others++
				}
			}
			t.Logf("1 of 10 removed: %.2f%% of keys of the others moved too", 100*float64(others)/float64(len(keys)))
		})
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A retry of a keyed call walks on to the next endpoint, the same one for
// every client; a call without a key goes to a random endpoint.
func TestHashingRetriesWalkOnAndUnkeyedCallsSpread(t *testing.T) {
	for _, kind := range hashingKinds {
		b := newHashLB(t, StrategyConfig{Kind: kind}, 5, nil)
		twin := newHashLB(t, StrategyConfig{Kind: kind}, 5, nil)
		ctx := WithHashKey(context.Background(), "user-7")
		first, err := b.Pick(ctx)
		must(t, err)
		b.Release(first)
		tried := []*Endpoint{first}
		for range 4 {
			e, err := b.PickExcluding(ctx, tried)
			must(t, err)
			b.Release(e)
			te, err := twin.PickExcluding(ctx, endpointsNamed(twin, tried))
			must(t, err)
			twin.Release(te)
			if slicesContains(tried, e) {
				t.Fatalf("%s: retry went back to %s, tried %v", kind, e.ID, tried)
			}
			if te.ID != e.ID {
				t.Fatalf("%s: clients disagree on the retry: %s and %s", kind, e.ID, te.ID)
			}
			tried = append(tried, e)
		}
		// Every endpoint tried: the key's own again.
		e, err := b.PickExcluding(ctx, tried)
		must(t, err)
		b.Release(e)
		if e != first {
			t.Errorf("%s: with every endpoint tried, got %s, want the key's own %s", kind, e.ID, first.ID)
		}

		counts := pickCounts(t, b, context.Background(), 5000)
		for id, n := range counts {
			if n < 700 || n > 1300 {
				t.Errorf("%s: unkeyed calls: %s took %d of 5000", kind, id, n)
			}
		}
		if len(counts) != 5 {
			t.Errorf("%s: unkeyed calls reached %d endpoints, want 5", kind, len(counts))
		}
	}
}

func endpointsNamed(b *LoadBalancer, like []*Endpoint) []*Endpoint {
	out := make([]*Endpoint, len(like))
	for i, e := range like {
		out[i], _ = b.Endpoint(e.ID)
	}
	return out
}

func slicesContains(list []*Endpoint, e *Endpoint) bool { return tried(list, e) }

// The session id hashes as the key when the context has no other.
func TestHashingHashesTheSessionID(t *testing.T) {
	b := newHashLB(t, StrategyConfig{Kind: RingHash}, 10, nil)
	bySession, err := b.Pick(WithSession(context.Background(), "user-42"))
	must(t, err)
	b.Release(bySession)
	byKey, err := b.Pick(WithHashKey(context.Background(), "user-42"))
	must(t, err)
	b.Release(byKey)
	byHash, err := b.PickHash(context.Background(), xxhash.Sum64String("user-42"), nil)
	must(t, err)
	b.Release(byHash)
	if bySession != byKey || byKey != byHash {
		t.Errorf("session %s, key %s, hash %s: want one endpoint", bySession.ID, byKey.ID, byHash.ID)
	}
}

// HashKey.Hash hashes a header as grpc-go does (values joined with ","),
// says when the header is missing, and mixes in the method when asked.
func TestHashKeyHash(t *testing.T) {
	header := HashKey{Header: "x-user-id"}
	if h, ok := header.Hash("/peervault.PeerVaultService/Get", []string{"a", "b"}); !ok || h != xxhash.Sum64String("a,b") {
		t.Errorf("header a,b: %x %v, want XXH64(\"a,b\")", h, ok)
	}
	if _, ok := header.Hash("/m", nil); ok {
		t.Error("a missing header gave a key")
	}
	method := HashKey{Method: true}
	m1, _ := method.Hash("/peervault.PeerVaultService/Get", nil)
	m2, _ := method.Hash("/peervault.PeerVaultService/Put", nil)
	if m1 == m2 {
		t.Error("two methods hash alike")
	}
	both := HashKey{Header: "x-user-id", Method: true}
	b1, _ := both.Hash("/peervault.PeerVaultService/Get", []string{"a"})
	b2, _ := both.Hash("/peervault.PeerVaultService/Put", []string{"a"})
	if b1 == b2 || b1 == xxhash.Sum64String("a") {
		t.Error("method and header together do not depend on the method")
	}
	if allocs := testing.AllocsPerRun(100, func() { both.Hash("/m", []string{"a", "b"}) }); allocs != 0 {
		t.Errorf("Hash allocates %v times", allocs)
	}
}

// Bounded load: with Zipf-distributed keys, most calls share a few keys;
// with hash_balance_factor 125 no endpoint takes a call that would put it
// over ceil(1.25 × its share of the calls in flight), so it never holds
// more than 1.25 × the mean + 1; without, the hottest key's endpoint
// holds many times the mean.
func TestHashBalanceFactorBoundsLoad(t *testing.T) {
	for _, kind := range hashingKinds {
		for _, factor := range []int{0, 125} {
			b := newHashLB(t, StrategyConfig{Kind: kind, HashBalanceFactor: factor}, 10, nil)
			unbounded := newHashLB(t, StrategyConfig{Kind: kind}, 10, nil)
			home := 0
			r := rand.New(rand.NewPCG(3, 4))
			zipf := rand.NewZipf(r, 1.1, 1, 99999)
			var inFlight []*Endpoint
			held := map[*Endpoint]int{}
			worst := 0.0
			for i := range 50000 {
				key := xxhash.Sum64String(fmt.Sprintf("user-%d", zipf.Uint64()))
				e, err := b.PickHash(context.Background(), key, nil)
				must(t, err)
				inFlight = append(inFlight, e)
				held[e]++
				if own := mapKeys(t, unbounded, []uint64{key}); own[0] == e.ID {
					home++
				}
				mean := float64(len(inFlight)) / 10
				if excess := float64(held[e]) - 1.25*mean; excess > worst {
					worst = excess
				}
				// Calls end in random order, keeping 200 to 400 in flight.
				if len(inFlight) > 200 && (len(inFlight) >= 400 || r.IntN(2) == 0) {
					for range 1 + i%2 {
						j := r.IntN(len(inFlight))
						b.Release(inFlight[j])
						held[inFlight[j]]--
						inFlight[j] = inFlight[len(inFlight)-1]
						inFlight = inFlight[:len(inFlight)-1]
					}
				}
			}
			t.Logf("%s, hash_balance_factor %d: the most an endpoint held over 1.25 × the mean: %.1f calls; %.1f%% of calls on their key's own endpoint", kind, factor, worst, float64(home)/500)
			if factor != 0 && worst > 1 {
				t.Errorf("%s: an endpoint held %.1f calls over 1.25 × the mean, want at most 1", kind, worst)
			}
			if factor == 0 && worst < 10 {
				t.Errorf("%s: without a bound the hot keys' endpoint held only %.1f over 1.25 × the mean; the test's keys are not skewed", kind, worst)
			}
		}
	}
}

// A subset (a grpc-go channel's ready endpoints) keeps each key on the
// table over every endpoint: keys of endpoints left out walk on, the
// others stay.
func TestHashingSubsetWalksPastLeftOut(t *testing.T) {
	keys := testKeys()[:20000]
	for _, kind := range hashingKinds {
		b := newHashLB(t, StrategyConfig{Kind: kind}, 10, nil)
		whole := mapKeys(t, b, keys)
		s := b.NewSubset()
		var allowed []*Endpoint
		for _, e := range b.Endpoints() {
			if e.ID != "s02" {
				allowed = append(allowed, e)
			}
		}
		s.Allow(allowed)
		for i, k := range keys {
			e, err := s.PickHash(context.Background(), k, nil)
			must(t, err)
			b.Release(e)
			if e.ID == "s02" || (whole[i] != "s02" && e.ID != whole[i]) {
				t.Fatalf("%s: key %d went to %s in the subset, %s in the whole", kind, i, e.ID, whole[i])
			}
		}
		s.Allow(nil)
		if _, err := s.PickHash(context.Background(), keys[0], nil); err != ErrNoneAllowed {
			t.Errorf("%s: an empty subset: %v, want ErrNoneAllowed", kind, err)
		}
	}
}

// With a circuit breaker, a key whose endpoint is at its cap walks on.
func TestHashingWalksPastFullEndpoints(t *testing.T) {
	b, err := New(Config{Service: "peervault", Strategy: StrategyConfig{Kind: Maglev},
		CircuitBreakers: &CircuitBreakers{MaxRequestsPerEndpoint: 1}}, nil)
	must(t, err)
	for i := range 3 {
		must(t, b.AddServer(fmt.Sprintf("s%d", i), fmt.Sprintf("10.0.0.%d", i), 50051, 1))
	}
	ctx := WithHashKey(context.Background(), "k")
	seen := map[string]bool{}
	for range 3 {
		e, err := b.Pick(ctx)
		must(t, err)
		seen[e.ID] = true
	}
	if len(seen) != 3 {
		t.Errorf("three calls of one key at a cap of 1 reached %v", seen)
	}
	if _, err := b.Pick(ctx); err == nil || !strings.Contains(err.Error(), "max_requests_per_endpoint") {
		t.Errorf("a fourth call: %v, want the breaker's error", err)
	}
}

func TestHashingSettingsAreChecked(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Strategy: StrategyConfig{Kind: RoundRobin, HashBalanceFactor: 150}}, "apply only to ring_hash and maglev"},
		{Config{Strategy: StrategyConfig{Kind: Maglev, MinRingSize: 10}}, "apply only to ring_hash"},
		{Config{Strategy: StrategyConfig{Kind: RingHash, TableSize: 65537}}, "applies only to maglev"},
		{Config{Strategy: StrategyConfig{Kind: Maglev, TableSize: 65536}}, "must be a prime"},
		{Config{Strategy: StrategyConfig{Kind: RingHash, MinRingSize: 8192}}, "larger than the default max_ring_size"},
		{Config{Strategy: StrategyConfig{Kind: RingHash, MaxRingSize: MaxRingSize + 1}}, "at most"},
		{Config{Strategy: StrategyConfig{Kind: RingHash, HashBalanceFactor: 99}}, "at least 100"},
		{Config{Strategy: StrategyConfig{Kind: RingHash, HashKey: &HashKey{}}}, "needs a header"},
		{Config{Strategy: StrategyConfig{Kind: RingHash, HashKey: &HashKey{Header: "x-id-bin"}}}, "binary"},
		{Config{Strategy: StrategyConfig{Kind: RingHash, HashKey: &HashKey{Header: "X-Id"}}}, "lower-case"},
		{Config{Strategy: StrategyConfig{Kind: RingHash}, Sticky: StickyConfig{Enabled: true, TTL: 1}}, "drop sticky_session"},
		{Config{Strategy: StrategyConfig{Kind: Maglev, SlowStart: &SlowStart{Window: 1}}}, "slow_start does not apply"},
	} {
		_, err := New(tc.cfg, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg.Strategy, err, tc.want)
		}
	}
	if _, err := New(Config{Strategy: StrategyConfig{Kind: RingHash, MaxRingSize: 512}}, nil); err != nil {
		t.Errorf("max_ring_size below the default minimum: %v", err)
	}
}

// Under bounded load, concurrent picks and releases while endpoints come,
// go and fail leave the service's count of calls in flight at zero.
func TestHashBalanceFactorCountsConcurrently(t *testing.T) {
	b := newHashLB(t, StrategyConfig{Kind: RingHash, HashBalanceFactor: 125}, 4, nil)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				e, err := b.PickHash(context.Background(), uint64(g*7919+i%13), nil)
				if err != nil {
					continue // every endpoint may be unhealthy for a moment
				}
				b.Release(e)
			}
		})
	}
	wg.Go(func() {
		for i := range 300 {
			_ = b.SetHealth(fmt.Sprintf("s%02d", i%4+1), HealthStatus(i%3))
			if i%50 == 0 {
				_ = b.RemoveServer("s04")
				_ = b.AddServer("s04", "10.0.0.4", 50051, 1)
			}
		}
	})
	wg.Wait()
	if n := b.inFlightTotal(); n != 0 {
		t.Errorf("calls in flight after every release: %d, want 0", n)
	}
}

// An endpoint whose metadata has hash_key (gRFC A76) is hashed by it, not
// by its address: a server that comes back at a new address keeps its
// keys.
func TestHashingHonoursTheEndpointsHashKey(t *testing.T) {
	keys := testKeys()[:5000]
	for _, kind := range hashingKinds {
		build := func(addresses []string) []string {
			b, err := New(Config{Service: "peervault", Strategy: StrategyConfig{Kind: kind}}, nil)
			must(t, err)
			var specs []EndpointSpec
			for i, a := range addresses {
				specs = append(specs, EndpointSpec{ID: fmt.Sprintf("s%d", i), Host: a, Port: 50051, Weight: 1,
					Metadata: map[string]string{"hash_key": fmt.Sprintf("pod-%d", i)}})
			}
			must(t, b.Sync(specs))
			return mapKeys(t, b, keys)
		}
		before := build([]string{"10.0.0.1", "10.0.0.2", "10.0.0.3"})
		after := build([]string{"10.0.9.1", "10.0.9.2", "10.0.9.3"})
		if !equalStrings(before, after) {
			t.Errorf("%s: keys moved when the addresses changed and the hash keys did not", kind)
		}
	}
}
