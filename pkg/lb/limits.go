package lb

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"
)

// CircuitBreakers are Envoy's circuit breakers for a service: caps on the
// calls in flight, over the whole service and on each endpoint. An
// endpoint at its cap is skipped by the pick; when every endpoint is, or
// the service is at its cap, the call fails at once (ErrOverloaded)
// rather than queueing without bound. Zero is no cap.
type CircuitBreakers struct {
	// MaxRequests caps the service's calls in flight (Envoy's
	// max_requests; Envoy's default is 1024, pvlb's is none).
	MaxRequests int `json:"max_requests,omitempty"`
	// MaxRequestsPerEndpoint caps each endpoint's calls in flight.
	MaxRequestsPerEndpoint int `json:"max_requests_per_endpoint,omitempty"`
	// MaxPending caps the service's calls waiting for a connection to
	// their endpoint to be ready (Envoy's max_pending_requests: calls
	// queued for a connection); past it a call fails at once.
	MaxPending int `json:"max_pending,omitempty"`
}

// RateLimit caps the calls each endpoint is handed per second: a token
// bucket of Burst tokens that refills at RequestsPerSecond. An endpoint
// out of tokens is skipped like one at its circuit breaker's cap.
type RateLimit struct {
	RequestsPerSecond float64 `json:"requests_per_second"`
	// Burst is how many calls may go at once after a quiet spell; zero
	// means DefaultBurst: a tenth of a second's worth, at least 1.
	Burst int `json:"burst,omitempty"`
}

// DefaultBurst is a rate limit's burst when it sets none.
func DefaultBurst(rps float64) int { return max(1, int(math.Ceil(rps/10))) }

// MaxLimit bounds the caps and the burst.
const MaxLimit = 1 << 20

func (c *CircuitBreakers) validate() error {
	switch {
	case c.MaxRequests < 0 || c.MaxRequests > MaxLimit:
		return fmt.Errorf("circuit breakers: max_requests must be from 0 to %d, not %d", MaxLimit, c.MaxRequests)
	case c.MaxPending < 0 || c.MaxPending > MaxLimit:
		return fmt.Errorf("circuit breakers: max_pending must be from 0 to %d, not %d", MaxLimit, c.MaxPending)
	case c.MaxRequestsPerEndpoint < 0 || c.MaxRequestsPerEndpoint > inflightMask:
		return fmt.Errorf("circuit breakers: max_requests_per_endpoint must be from 0 to %d, not %d", inflightMask, c.MaxRequestsPerEndpoint)
	}
	return nil
}

func (r *RateLimit) validate() error {
	switch {
	case !(r.RequestsPerSecond > 0 && r.RequestsPerSecond <= 1e9):
		return fmt.Errorf("rate limit: requests_per_second must be over 0, not %g", r.RequestsPerSecond)
	case r.Burst < 0 || r.Burst > MaxLimit:
		return fmt.Errorf("rate limit: burst must be from 0 to %d, not %d", MaxLimit, r.Burst)
	}
	return nil
}

// ErrOverloaded is returned by a pick when the service is at its circuit
// breaker's cap, or every endpoint that may take traffic is at its cap or
// out of its rate: the call should fail at once (RESOURCE_EXHAUSTED).
var ErrOverloaded = errors.New("overloaded")

// limits is what a LoadBalancer with circuit breakers or a rate limit
// checks on each pick.
type limits struct {
	maxRequests int64
	maxPending  int64
	perEndpoint uint64 // calls in flight an endpoint may hold; 0 none
	interval    int64  // rate limit: nanoseconds per call; 0 none
	tolerance   int64  // (burst-1) intervals: how far ahead a bucket may run

	// The service's calls in flight, when maxRequests is set, and waiting
	// for a connection, when maxPending is: the balancer's own counters,
	// which the limits of a reconfiguration go on counting.
	inFlight, pending *atomic.Int64
	// Counts for statistics: picks that skipped an endpoint at its cap,
	// or out of its rate, and calls refused because nothing could take
	// them.
	breakerSkips, rateSkips, overloaded atomic.Uint64
}

func newLimits(cb *CircuitBreakers, rl *RateLimit, inFlight, pending *atomic.Int64) *limits {
	if cb == nil && rl == nil {
		return nil
	}
	l := &limits{inFlight: inFlight, pending: pending}
	if cb != nil {
		l.maxRequests, l.perEndpoint, l.maxPending = int64(cb.MaxRequests), uint64(cb.MaxRequestsPerEndpoint), int64(cb.MaxPending)
	}
	if rl != nil {
		l.interval = int64(float64(time.Second) / rl.RequestsPerSecond)
		burst := rl.Burst
		if burst == 0 {
			burst = DefaultBurst(rl.RequestsPerSecond)
		}
		l.tolerance = int64(burst-1) * l.interval
	}
	return l
}

// admitService takes a place in the service's cap.
func (l *limits) admitService() bool {
	if l.maxRequests == 0 {
		return true
	}
	if l.inFlight.Add(1) > l.maxRequests {
		l.inFlight.Add(-1)
		return false
	}
	return true
}

// releaseService gives back a place these limits took (see
// LoadBalancer.releaseSettling for a call that may not have taken one).
func (l *limits) releaseService() {
	if l.maxRequests != 0 {
		l.inFlight.Add(-1)
	}
}

// carryOver starts new limits from the counts statistics show of the
// limits they replace.
func (l *limits) carryOver(old *limits) {
	l.breakerSkips.Store(old.breakerSkips.Load())
	l.rateSkips.Store(old.rateSkips.Load())
	l.overloaded.Store(old.overloaded.Load())
}

// admit counts a pick of e if e is under its cap and has a token, the
// two checks made atomically with the counting, so that concurrent picks
// never overshoot the cap.
func (l *limits) admit(e *Endpoint, now int64) bool {
	if l.perEndpoint != 0 {
		for {
			v := e.load.Load()
			if v&inflightMask >= l.perEndpoint {
				l.breakerSkips.Add(1)
				return false
			}
			if e.load.CompareAndSwap(v, v+pickDelta) {
				break
			}
		}
	} else {
		e.load.Add(pickDelta)
	}
	if l.interval != 0 && !l.takeToken(e, now) {
		e.load.Add(^uint64(pickDelta - 1)) // undo the pick and the call in flight
		l.rateSkips.Add(1)
		return false
	}
	return true
}

// takeToken is the rate limit's bucket as GCRA: e's theoretical arrival
// time moves one interval per call; a call is allowed while that time is
// no more than the burst ahead of now.
func (l *limits) takeToken(e *Endpoint, now int64) bool {
	for {
		tat := e.rateTAT.Load()
		next := max(tat, now)
		if next-now > l.tolerance {
			return false
		}
		if e.rateTAT.CompareAndSwap(tat, next+l.interval) {
			return true
		}
	}
}

// BeginPending counts a call that starts waiting for a connection to its
// endpoint, and reports whether the circuit breakers' max_pending allows
// it; a call that may not wait should fail at once (ErrOverloaded). A
// call allowed must end its wait with EndPending. Without max_pending
// every call may wait and nothing is counted.
func (lb *LoadBalancer) BeginPending() bool {
	l := lb.rules.Load().limits
	if l == nil || l.maxPending == 0 {
		return true
	}
	if l.pending.Add(1) > l.maxPending {
		l.pending.Add(-1)
		l.overloaded.Add(1)
		return false
	}
	return true
}

// EndPending ends a wait BeginPending allowed.
func (lb *LoadBalancer) EndPending() {
	r := lb.rules.Load()
	switch l := r.limits; {
	case r.settling:
		// The wait may have begun under rules that did not count it.
		decrementAboveZero(&lb.waiting)
	case l != nil && l.maxPending != 0:
		l.pending.Add(-1)
	}
}

// LimitsPending reports whether max_pending is set: only then need a
// caller tell the balancer of calls waiting for connections.
func (lb *LoadBalancer) LimitsPending() bool {
	l := lb.rules.Load().limits
	return l != nil && l.maxPending != 0
}

// ErrPendingFull describes a call refused by max_pending.
func (lb *LoadBalancer) ErrPendingFull() error {
	var most int64
	if l := lb.rules.Load().limits; l != nil {
		most = l.maxPending
	}
	return fmt.Errorf("%w: service %q has %d calls waiting for connections, its circuit breaker's max_pending", ErrOverloaded, lb.service, most)
}
