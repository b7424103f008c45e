package lb

import (
	"context"
	"math"
	"slices"
	"sync"

	"github.com/cespare/xxhash/v2"
)

// Hashing strategies.
const (
	RingHash = "ring_hash"
	Maglev   = "maglev"
)

type hashKeyCtx struct{}

// WithHashKey returns a context whose calls ring_hash and maglev map by
// key: calls with the same key go to the same endpoint on every client
// built from the same endpoints. It takes precedence over the hash_key
// block's header and over the session id.
func WithHashKey(ctx context.Context, key string) context.Context {
	return WithRequestHash(ctx, xxhash.Sum64String(key))
}

// WithRequestHash is WithHashKey for a key already hashed with XXH64,
// as gRPC's xDS config selector hands the ring its request hash.
func WithRequestHash(ctx context.Context, hash uint64) context.Context {
	return context.WithValue(ctx, hashKeyCtx{}, hash)
}

// RequestHash returns the hash of the call's key: from WithHashKey or
// WithRequestHash, else the sticky session id from WithSession.
func RequestHash(ctx context.Context) (uint64, bool) {
	if h, ok := ctx.Value(hashKeyCtx{}).(uint64); ok {
		return h, true
	}
	if id, ok := SessionFromContext(ctx); ok {
		return xxhash.Sum64String(id), true
	}
	return 0, false
}

// HashesKeys reports whether the strategy maps each call by its key
// (ring_hash, maglev).
func (lb *LoadBalancer) HashesKeys() bool { return lb.rules.Load().hashes }

// ReadsRequest reports whether picks read a call's metadata or method
// (KeyedContext): sticky sessions keyed by metadata, or a hash_key.
func (lb *LoadBalancer) ReadsRequest() bool {
	cfg := &lb.rules.Load().cfg
	return (cfg.Sticky.Enabled && cfg.Sticky.Key != "") || cfg.Strategy.HashKey != nil
}

// KeyedContext returns ctx carrying what the balancer reads from a call's
// request: the sticky session id from the metadata sticky_session.key
// names, or the hash of what hash_key names; a key ctx already carries
// (WithSession, WithHashKey) takes precedence. get returns the values of
// one metadata key; the gRPC layer passes its metadata's. ctx is returned
// as it is when there is nothing to read.
func (lb *LoadBalancer) KeyedContext(ctx context.Context, method string, get func(key string) []string) context.Context {
	cfg := &lb.rules.Load().cfg
	if k := cfg.Strategy.HashKey; k != nil {
		if _, ok := ctx.Value(hashKeyCtx{}).(uint64); ok {
			return ctx
		}
		var values []string
		if k.Header != "" {
			values = get(k.Header)
		}
		if h, ok := k.Hash(method, values); ok {
			return WithRequestHash(ctx, h)
		}
		return ctx
	}
	if cfg.Sticky.Enabled && cfg.Sticky.Key != "" {
		if _, ok := SessionFromContext(ctx); ok {
			return ctx
		}
		if v := get(cfg.Sticky.Key); len(v) > 0 && v[0] != "" {
			return WithSession(ctx, v[0])
		}
	}
	return ctx
}

// Hash returns the hash of a call's key as k describes it, from the
// call's full method name and the values of k.Header in its metadata;
// false when the header is configured but absent (the call then goes to
// a random endpoint, as grpc-go's ring_hash sends it). A header alone
// hashes exactly as grpc-go does: XXH64 of the values joined with ",".
func (k *HashKey) Hash(method string, values []string) (uint64, bool) {
	if k.Header != "" && len(values) == 0 {
		return 0, false
	}
	var d xxhash.Digest
	d.Reset()
	if k.Method {
		_, _ = d.WriteString(method)
		if k.Header == "" {
			return d.Sum64(), true
		}
		_, _ = d.WriteString("\n")
	}
	for i, v := range values {
		if i > 0 {
			_, _ = d.WriteString(",")
		}
		_, _ = d.WriteString(v)
	}
	return d.Sum64(), true
}

// hashing is ring_hash and maglev. Its table is built over every endpoint
// of the service, not only those that may take traffic: an unhealthy or
// ejected endpoint is walked past, so only its own keys move, and they
// come back when it does. The table is rebuilt only when the endpoints'
// addresses or weights change, and reused across snapshots otherwise.
type hashing struct {
	strategyBase
	minRing, maxRing int // ring_hash
	tableSize        int // maglev
	balanceFactor    int // percent; 0 is off

	mu   sync.Mutex
	last *builtTable
}

type builtTable struct {
	members []hashMember
	table   hashTable
}

func newHashing(cfg StrategyConfig) *hashing {
	h := &hashing{balanceFactor: cfg.HashBalanceFactor, tableSize: cfg.TableSize}
	h.minRing, h.maxRing = cfg.RingSizes()
	if h.tableSize == 0 {
		h.tableSize = DefaultMaglevTableSize
	}
	return h
}

// readsLoad is set under bounded load, which reads calls in flight.
func (s *hashing) readsLoad() bool { return s.balanceFactor != 0 }

// NewPicker serves a Subset or a caller that knows only the endpoints
// that may take traffic: the table is then over those alone.
func (s *hashing) NewPicker(eligible []*Endpoint) Picker {
	return s.newPickerOver(eligible, eligible, nil)
}

// newPickerOver builds the picker over all, of which eligible (a
// subsequence of all, in the same order) may take traffic; lb, when
// bounded load is on, counts the service's calls in flight.
func (s *hashing) newPickerOver(all, eligible []*Endpoint, lb *LoadBalancer) *hashPicker {
	p := &hashPicker{eps: all, table: s.table(all), ok: make([]bool, len(all)), lb: lb}
	j := 0
	for i, e := range all {
		if j < len(eligible) && eligible[j] == e {
			p.ok[i] = true
			j++
		}
	}
	if s.balanceFactor != 0 {
		p.factor = uint64(s.balanceFactor)
		p.share = make([]float64, len(all))
		var sum float64
		for _, e := range eligible {
			sum += float64(e.Weight)
		}
		for i, e := range all {
			p.share[i] = float64(e.Weight) / sum
		}
	}
	p.rnd.seed(&s.strategyBase)
	return p
}

// table returns the table over all, reusing the last one built when the
// members are the same.
func (s *hashing) table(all []*Endpoint) hashTable {
	members := make([]hashMember, len(all))
	for i, e := range all {
		key := e.Address
		// gRFC A76's per-endpoint hash key: an endpoint whose address
		// changes across restarts keeps its keys.
		if k := e.Metadata["hash_key"]; k != "" {
			key = k
		}
		members[i] = hashMember{key: key, weight: max(e.Weight, 1), index: int32(i)}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last != nil && slices.Equal(s.last.members, members) {
		return s.last.table
	}
	var t hashTable
	if s.kind == Maglev {
		// The size was checked to be a prime when the config was.
		t, _ = newMaglevTable(members, s.tableSize)
	} else {
		t = newHashRing(members, s.minRing, s.maxRing)
	}
	s.last = &builtTable{members: members, table: t}
	return t
}

// hashPicker maps a request hash to an endpoint of eps.
type hashPicker struct {
	eps   []*Endpoint
	table hashTable
	ok    []bool // eps[i] may take traffic
	// factor is the hash_balance_factor and share each endpoint's
	// weight over the eligible endpoints' total; nil share is off.
	factor uint64
	share  []float64
	lb     *LoadBalancer
	_      cacheLinePad
	rnd    splitmix
}

// Pick serves a call without a key: a random one, as grpc-go's ring_hash
// does for a call without its header.
func (p *hashPicker) Pick(triedList []*Endpoint) *Endpoint {
	return p.pickHash(p.rnd.next(), triedList, nil)
}

// pickHash returns the endpoint for hash h: the owner of h's position or,
// when that one may not take the call (not eligible, not allowed, already
// tried), the next owner along the table that may. Only when none may,
// an eligible and allowed endpoint that was tried; nil when none is
// allowed. Under bounded load, an endpoint over its bound passes the call
// to the next one with room.
func (p *hashPicker) pickHash(h uint64, triedList []*Endpoint, allowed map[*Endpoint]bool) *Endpoint {
	start := p.table.find(h)
	owners := p.table.owners
	if idx := owners[start]; p.ok[idx] && allowed == nil && len(triedList) == 0 && p.share == nil {
		return p.eps[idx] // the common case, kept apart from the walk
	}
	var fallback *Endpoint
	for i, n := start, len(owners); ; {
		idx := owners[i]
		if p.ok[idx] {
			e := p.eps[idx]
			if allowed == nil || allowed[e] {
				if len(triedList) == 0 || !tried(triedList, e) {
					if p.share != nil {
						return p.bounded(h, int(idx), triedList, allowed)
					}
					return e
				}
				if fallback == nil {
					fallback = e
				}
			}
		}
		if i++; i == n {
			i = 0
		}
		if i == start {
			return fallback
		}
	}
}

// inFlightTotal is the calls in flight on every endpoint: the balancer's
// count, or, for a picker built on its own (NewPicker), the sum.
func (p *hashPicker) inFlightTotal() int64 {
	if p.lb != nil {
		return p.lb.inFlightTotal()
	}
	var sum int64
	for _, e := range p.eps {
		sum += e.inFlight()
	}
	return sum
}

// bounded returns eps[first] unless it is full, else the first endpoint
// with room in a probe order seeded by h (Envoy's random jump, which keeps
// overflow from cascading onto the full endpoint's neighbours), else the
// least full of those probed. An endpoint is full when one more call
// would take it past ceil(factor/100 × its share × the calls in flight
// with this one), the bound of Mirrokni, Thorup and Zadimoghaddam; one
// always has room, as none can be above the mean and all below it.
func (p *hashPicker) bounded(h uint64, first int, triedList []*Endpoint, allowed map[*Endpoint]bool) *Endpoint {
	load := float64(p.inFlightTotal()+1) * float64(p.factor) / 100
	fill := func(i int) float64 {
		return float64(p.eps[i].inFlight()+1) / max(math.Ceil(load*p.share[i]), 1)
	}
	best, bestFill := first, fill(first)
	if bestFill <= 1 {
		return p.eps[first]
	}
	// An affine map k → (a·k + b) mod n with a coprime to n visits every
	// endpoint once without a shuffled copy.
	n := uint64(len(p.eps))
	mixed := (h ^ h>>29) * 0xbf58476d1ce4e5b9
	a, b := mixed%n, (mixed>>32)%n
	if a == 0 {
		a = 1
	}
	for gcd(a, n) != 1 {
		a++
	}
	for k := range n {
		i := int((a*k + b) % n)
		if i == first || !p.ok[i] {
			continue
		}
		e := p.eps[i]
		if (allowed != nil && !allowed[e]) || (len(triedList) != 0 && tried(triedList, e)) {
			continue
		}
		f := fill(i)
		if f <= 1 {
			return e
		}
		if f < bestFill {
			best, bestFill = i, f
		}
	}
	return p.eps[best]
}
