package lb

import (
	"math"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"
)

// Outcome is what a finished call says about the endpoint that served it.
type Outcome uint8

const (
	// Neutral says nothing about the endpoint: the caller's own mistake
	// (INVALID_ARGUMENT, say), a call the caller cancelled, or a pick
	// released without a result.
	Neutral Outcome = iota
	// Success is a call the endpoint answered.
	Success
	// Failure is a call that failed through the endpoint's fault: it was
	// unreachable, broke the connection, timed out or failed internally.
	Failure
)

var outcomeNames = [...]string{"neutral", "success", "failure"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// An OutcomeObserver is told of every finished call. A Strategy that
// implements it learns from each outcome; a strategy that does not pays
// nothing for outcomes beyond the endpoint's counters. ObserveOutcome runs
// on the caller's goroutine at the end of every call, so it must be quick,
// lock-free and allocation-free.
type OutcomeObserver interface {
	ObserveOutcome(e *Endpoint, took time.Duration, outcome Outcome)
}

// stripeCount is how many counter stripes an endpoint has: enough that two
// goroutines on different cores seldom share one on machines of a few
// dozen cores, few enough that an endpoint stays small.
const stripeCount = 8

// stripe is one cache line of an endpoint's counters.
type stripe struct {
	picks     atomic.Uint64
	successes atomic.Uint64
	failures  atomic.Uint64
	neutral   atomic.Uint64
	probes    atomic.Uint64 // health checks passed
	probeFail atomic.Uint64 // health checks failed
	ewma      atomic.Uint64 // float64 bits: latency EWMA in ns, 0 before a sample
	_         [8]byte
}

// ewmaWeight is the weight of a new latency sample in a stripe's moving
// average: about the last 16 calls count.
const ewmaWeight = 1.0 / 16

// stripe returns the stripe that counts this caller's picks and outcomes
// on e. A seeded LoadBalancer (the simulator's) counts on one stripe, so
// that its statistics repeat exactly for a seed.
func (lb *LoadBalancer) stripe(e *Endpoint) *stripe {
	if lb.oneStripe {
		return &e.stripes[0]
	}
	return e.stripeFor()
}

// stripeFor returns the stripe of the calling goroutine. Goroutine stacks
// are allocated apart and aligned to their size, so the stack address, not
// the goroutine's identity (which Go hides), tells concurrent callers apart
// at the cost of a multiply.
func (e *Endpoint) stripeFor() *stripe {
	var marker byte
	sp := uintptr(unsafe.Pointer(&marker))
	return &e.stripes[(uint64(sp>>13)*0x9e3779b97f4a7c15)>>61]
}

// record counts one outcome and folds its latency into the average.
func (s *stripe) record(took time.Duration, o Outcome) {
	switch o {
	case Success:
		s.successes.Add(1)
	case Failure:
		s.failures.Add(1)
	default:
		s.neutral.Add(1)
	}
	if took > 0 && o != Neutral {
		s.observeLatency(float64(took))
	}
}

func (s *stripe) observeLatency(ns float64) {
	for {
		old := s.ewma.Load()
		avg := math.Float64frombits(old)
		next := ns
		if old != 0 {
			next = avg + (ns-avg)*ewmaWeight
		}
		if s.ewma.CompareAndSwap(old, math.Float64bits(next)) {
			return
		}
	}
}

// OutcomeCounts are an endpoint's finished calls and health checks.
type OutcomeCounts struct {
	// Successes, Failures and Neutral count finished calls by outcome.
	Successes uint64 `json:"successes"`
	Failures  uint64 `json:"failures"`
	Neutral   uint64 `json:"neutral"`
	// LatencyEWMA is a moving average of recent calls' latency
	// (successes and failures), zero before the first.
	LatencyEWMA time.Duration `json:"-"`
	// ChecksPassed and ChecksFailed count health checks.
	ChecksPassed uint64 `json:"checks_passed"`
	ChecksFailed uint64 `json:"checks_failed"`
}

// Outcomes returns the endpoint's outcome counters.
func (e *Endpoint) Outcomes() OutcomeCounts {
	var c OutcomeCounts
	var weighted, weight float64
	for i := range e.stripes {
		s := &e.stripes[i]
		succ, fail := s.successes.Load(), s.failures.Load()
		c.Successes += succ
		c.Failures += fail
		c.Neutral += s.neutral.Load()
		c.ChecksPassed += s.probes.Load()
		c.ChecksFailed += s.probeFail.Load()
		if avg := math.Float64frombits(s.ewma.Load()); avg > 0 {
			n := float64(min(succ+fail, 16)) // a stripe's average remembers about 16 calls
			weighted += avg * n
			weight += n
		}
	}
	if weight > 0 {
		c.LatencyEWMA = time.Duration(weighted / weight)
	}
	return c
}

// Requests returns how many times this endpoint has been picked.
func (e *Endpoint) Requests() uint64 {
	n := e.load.Load() >> inflightBits
	for i := range e.stripes {
		n += e.stripes[i].picks.Load()
	}
	return n
}

// InFlight returns how many picks of this endpoint have not ended.
func (e *Endpoint) InFlight() int64 {
	// Ends are read before picks: every end was picked earlier, so the
	// difference never goes below zero however the reads interleave.
	var ended uint64
	for i := range e.stripes {
		s := &e.stripes[i]
		ended += s.successes.Load() + s.failures.Load() + s.neutral.Load()
	}
	return int64(e.Requests() - ended)
}

// Done ends a pick and reports what came of the call: how long it took and
// its outcome. Every pick must end with exactly one Done or Release. It is
// lock-free and allocates nothing.
func (lb *LoadBalancer) Done(e *Endpoint, took time.Duration, outcome Outcome) {
	r := lb.rules.Load()
	lb.release(r, e)
	lb.stripe(e).record(took, outcome)
	if r.observer != nil {
		r.observer.ObserveOutcome(e, took, outcome)
	}
	if r.outliers != nil {
		lb.observeOutlier(r.outliers, e, outcome)
	}
}

// release takes an ended call off the counts its pick added to.
func (lb *LoadBalancer) release(r *rules, e *Endpoint) {
	if r.settling {
		lb.releaseSettling(r, e)
		return
	}
	if r.trackLoad {
		e.load.Add(^uint64(0))
		if r.countTotal {
			lb.total.Add(-1)
		}
	}
	if r.limits != nil {
		r.limits.releaseService()
	}
}

// releaseSettling is release after a reconfiguration changed what is
// counted: the call may have been picked under rules that did not count
// it, so each count loses one only while above zero. Every count then
// returns to exact once the calls picked under the old rules have ended,
// and meanwhile errs low by at most their number.
func (lb *LoadBalancer) releaseSettling(r *rules, e *Endpoint) {
	for {
		v := e.load.Load()
		if v&inflightMask == 0 || e.load.CompareAndSwap(v, v-1) {
			break
		}
	}
	decrementAboveZero(&lb.total)
	decrementAboveZero(&lb.limited)
}

// decrementAboveZero takes one off n unless n is zero or below.
func decrementAboveZero(n *atomic.Int64) {
	for {
		v := n.Load()
		if v <= 0 || n.CompareAndSwap(v, v-1) {
			return
		}
	}
}

// inFlightTotal is the calls in flight on every endpoint, kept when
// bounded-load hashing reads it.
func (lb *LoadBalancer) inFlightTotal() int64 { return lb.total.Load() }

// Release ends a pick whose outcome is unknown; it counts as Neutral. A nil
// endpoint is ignored.
func (lb *LoadBalancer) Release(e *Endpoint) {
	if e == nil {
		return
	}
	r := lb.rules.Load()
	lb.release(r, e)
	lb.stripe(e).neutral.Add(1)
	if r.observer != nil {
		r.observer.ObserveOutcome(e, 0, Neutral)
	}
}

// Probed records whether a health check of e passed. A check is not a
// call, so it neither ends a pick nor reaches the strategy; it shows in the
// endpoint's statistics.
func (lb *LoadBalancer) Probed(e *Endpoint, passed bool) {
	s := lb.stripe(e)
	if passed {
		s.probes.Add(1)
	} else {
		s.probeFail.Add(1)
	}
}

// acquire counts a pick.
func (lb *LoadBalancer) acquire(r *rules, e *Endpoint) {
	if r.trackLoad {
		e.load.Add(pickDelta)
		if r.countTotal {
			lb.total.Add(1)
		}
		return
	}
	lb.stripe(e).picks.Add(1)
}
