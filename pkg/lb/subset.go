package lb

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// ErrNoneAllowed is returned by Subset.Pick when endpoints may take
// traffic but none of them is in the subset (none of their connections is
// ready yet, say).
var ErrNoneAllowed = errors.New("no eligible endpoint is in the subset")

// A Subset picks among the balancer's eligible endpoints that its owner
// allows, such as those whose connection on one grpc-go channel is ready.
// Its picker runs over the intersection itself, so a pick costs the same
// however many endpoints are left out, and the strategy spreads the share
// of a left-out endpoint over all the others rather than handing it to a
// neighbour. Sticky sessions, in-flight counts and outcomes are the
// balancer's own.
type Subset struct {
	lb *LoadBalancer

	mu      sync.Mutex // serialises rebuilds
	allowed map[*Endpoint]bool
	view    atomic.Pointer[subsetView]
}

// subsetView is the subset's picker for one snapshot of the balancer.
type subsetView struct {
	base     *snapshot
	allowed  map[*Endpoint]bool
	eligible int    // endpoints of base that may take traffic
	picker   Picker // over base's eligible ∩ allowed; nil when that is empty
}

// NewSubset returns a subset that allows nothing until Allow is called.
func (lb *LoadBalancer) NewSubset() *Subset {
	return &Subset{lb: lb, allowed: map[*Endpoint]bool{}}
}

// Allow makes the subset exactly the given endpoints.
func (s *Subset) Allow(endpoints []*Endpoint) {
	allowed := make(map[*Endpoint]bool, len(endpoints))
	for _, e := range endpoints {
		allowed[e] = true
	}
	s.mu.Lock()
	s.allowed = allowed
	s.view.Store(nil)
	s.mu.Unlock()
}

// current returns the view for the balancer's current snapshot, building
// it when the snapshot or the allowed set changed.
func (s *Subset) current() *subsetView {
	base := s.lb.current()
	if v := s.view.Load(); v != nil && v.base == base {
		return v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.view.Load(); v != nil && v.base == base {
		return v
	}
	v := &subsetView{base: base, allowed: s.allowed, eligible: len(base.eligible)}
	var in []*Endpoint
	for _, e := range base.eligible {
		if s.allowed[e] {
			in = append(in, e)
		}
	}
	switch {
	case len(in) == 0:
	case base.rules.hashes:
		// A key keeps its place on the table over every endpoint and
		// walks past those left out, so that only their keys move.
		v.picker = base.getPicker()
	default:
		v.picker = base.rules.newPickerWithin(base.all, base.eligible, in, base.panic)
	}
	s.view.Store(v)
	return v
}

// Pick is LoadBalancer.PickExcluding restricted to the subset: it fails
// with ErrNoHealthyServers when no endpoint may take traffic at all, and
// with ErrNoneAllowed when some may but none is in the subset.
func (s *Subset) Pick(ctx context.Context, tried []*Endpoint) (*Endpoint, error) {
	return s.pick(ctx, callKey{}, tried)
}

// PickHash is Pick for a call whose key hashes to hash, as
// LoadBalancer.PickHash.
func (s *Subset) PickHash(ctx context.Context, hash uint64, tried []*Endpoint) (*Endpoint, error) {
	return s.pick(ctx, callKey{hash, true}, tried)
}

func (s *Subset) pick(ctx context.Context, key callKey, tried []*Endpoint) (*Endpoint, error) {
	v := s.current()
	if v.picker == nil {
		if v.eligible == 0 {
			return nil, s.lb.noHealthy(v.base)
		}
		return nil, ErrNoneAllowed
	}
	return s.lb.pickFrom(ctx, v.base.rules, v.picker, v.allowed, key, tried)
}
