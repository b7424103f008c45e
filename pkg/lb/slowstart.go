package lb

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"
)

// SlowStart is a strategy's `slow_start` block, Envoy's slow start: an
// endpoint that joins, or returns from unhealthy or ejected, takes a share
// that grows over Window from MinWeightPercent of its weight to all of it:
// weight × max(MinWeightPercent/100, (elapsed/Window)^(1/Aggression)).
// Endpoints present when the balancer first gets endpoints start at full
// weight.
type SlowStart struct {
	Window time.Duration `json:"window"`
	// Aggression shapes the ramp: 1.0 (the default) is linear, larger
	// values give more traffic early.
	Aggression float64 `json:"aggression"`
	// MinWeightPercent is the share of its weight a warming endpoint gets
	// at least (default 10).
	MinWeightPercent float64 `json:"min_weight_percent"`
}

// DefaultSlowStart returns Envoy's defaults for the given window.
func DefaultSlowStart(window time.Duration) SlowStart {
	return SlowStart{Window: window, Aggression: 1, MinWeightPercent: 10}
}

func (s *SlowStart) validate() error {
	switch {
	case s.Window <= 0:
		return fmt.Errorf("slow start: window must be positive, not %s", s.Window)
	case !(s.Aggression > 0):
		return fmt.Errorf("slow start: aggression must be positive, not %g", s.Aggression)
	case !(s.MinWeightPercent >= 0 && s.MinWeightPercent <= 100):
		return fmt.Errorf("slow start: min_weight_percent %g is not from 0 to 100", s.MinWeightPercent)
	}
	return nil
}

// factor is the share of its weight an endpoint warming for elapsed gets.
func (s *SlowStart) factor(elapsed int64) float64 {
	t := float64(elapsed) / float64(s.Window)
	if t >= 1 {
		return 1
	}
	return max(s.MinWeightPercent/100, math.Pow(max(t, 0), 1/s.Aggression))
}

// rampPicker scales a strategy's picks of warming endpoints by their slow
// start factor: a pick of an endpoint at factor f stands with probability
// f, else the strategy picks again, so the share it gives up spreads over
// the others as the strategy would spread it.
type rampPicker struct {
	inner Picker
	lb    *LoadBalancer
	ss    *SlowStart
	until int64 // when the last ramp ends
	over  atomic.Bool
	rnd   splitmix
}

// maxRampRedraws bounds the picks a warming endpoint can cost one call.
const maxRampRedraws = 8

func (p *rampPicker) Pick(triedList []*Endpoint) *Endpoint {
	e := p.inner.Pick(triedList)
	if p.over.Load() {
		return e
	}
	now := p.lb.now()
	if now >= p.until {
		p.over.Store(true)
		return e
	}
	ss := p.ss
	for range maxRampRedraws {
		start := e.rampStart.Load()
		if start == 0 {
			return e
		}
		f := ss.factor(now - start)
		if f >= 1 || float64(p.rnd.next()>>11)/(1<<53) < f {
			return e
		}
		e = p.inner.Pick(triedList)
	}
	return e
}

// noteReturns finds the endpoints that became eligible since the previous
// snapshot (not the balancer's first endpoints, nor those panic mode
// lets in): slow start ramps them up, and a strategy that learns from
// outcomes forgets what it learnt of them while they were failing. It also
// wraps the picker while any endpoint is warming. The caller holds lb.mu.
func (lb *LoadBalancer) noteReturns(prev, s *snapshot) {
	ss := s.rules.cfg.Strategy.SlowStart
	forget, _ := s.rules.strategy.(interface{ forget(*Endpoint) })
	if (ss == nil && forget == nil) || s.panic {
		return
	}
	now := lb.now()
	if prev != nil && len(prev.all) > 0 && !prev.panic {
		was := make(map[*Endpoint]bool, len(prev.eligible))
		for _, e := range prev.eligible {
			was[e] = true
		}
		for _, e := range s.eligible {
			if was[e] {
				continue
			}
			if ss != nil {
				e.rampStart.Store(now)
			}
			if forget != nil {
				forget.forget(e)
			}
		}
	}
	if ss == nil {
		return
	}
	for _, e := range s.eligible {
		if start := e.rampStart.Load(); start != 0 && now-start < int64(ss.Window) {
			s.rampUntil = max(s.rampUntil, start+int64(ss.Window))
		}
	}
}

// wrapRamp wraps a snapshot's picker while some endpoint is warming,
// unless the strategy weighs warming endpoints in its own cost
// (least_connections and peak_ewma, whose redraws would find the same
// endpoint again).
func (s *snapshot) wrapRamp(p Picker, lb *LoadBalancer) Picker {
	if r, ok := s.rules.strategy.(interface{ rampsItself() bool }); ok && r.rampsItself() {
		return p
	}
	if s.rampUntil == 0 || p == nil {
		return p
	}
	r := &rampPicker{inner: p, lb: lb, ss: s.rules.cfg.Strategy.SlowStart, until: s.rampUntil}
	// Seeded (the simulator), the draws repeat; otherwise they come from
	// the runtime's per-thread generator.
	r.rnd.seeded = lb.oneStripe
	r.rnd.state.Store(uint64(s.rampUntil))
	return r
}
