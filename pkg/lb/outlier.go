package lb

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// OutlierDetection is a service's `outlier_detection` block: passive
// health from the outcomes of real calls, with the knob names and defaults
// of gRPC's outlier detection (gRFC A50) and Envoy's. An ejected endpoint
// takes no new picks for BaseEjectionTime × its ejection count (capped at
// MaxEjectionTime), then returns; the count decays by one every interval
// it is not ejected. Active health checks and ejection combine: an endpoint
// may take traffic only if both allow it.
type OutlierDetection struct {
	Interval         time.Duration `json:"interval"`
	BaseEjectionTime time.Duration `json:"base_ejection_time"`
	MaxEjectionTime  time.Duration `json:"max_ejection_time"`
	// MaxEjectionPercent bounds the share of endpoints ejected at once;
	// one endpoint may always be ejected, as in A50.
	MaxEjectionPercent int `json:"max_ejection_percent"`
	// ConsecutiveFailures ejects an endpoint at once after that many
	// failures in a row (Envoy's consecutive_5xx); zero is off.
	ConsecutiveFailures int                `json:"consecutive_failures"`
	SuccessRate         *SuccessRate       `json:"success_rate,omitempty"`
	FailurePercentage   *FailurePercentage `json:"failure_percentage,omitempty"`
}

// SuccessRate ejects, each interval, the endpoints whose success rate is
// more than StdevFactor/1000 standard deviations below the mean of those
// with at least RequestVolume calls, when at least MinimumHosts have.
type SuccessRate struct {
	StdevFactor           int `json:"stdev_factor"`
	EnforcementPercentage int `json:"enforcement_percentage"`
	MinimumHosts          int `json:"minimum_hosts"`
	RequestVolume         int `json:"request_volume"`
}

// FailurePercentage ejects, each interval, the endpoints whose failures
// exceed Threshold percent of at least RequestVolume calls, when at least
// MinimumHosts endpoints have that many calls.
type FailurePercentage struct {
	Threshold             int `json:"threshold"`
	EnforcementPercentage int `json:"enforcement_percentage"`
	MinimumHosts          int `json:"minimum_hosts"`
	RequestVolume         int `json:"request_volume"`
}

// DefaultOutlierDetection returns A50's and Envoy's defaults: every 10s,
// ejections of 30s growing to at most 300s, at most 10% of endpoints, 5
// consecutive failures; the two statistical algorithms off until set.
func DefaultOutlierDetection() OutlierDetection {
	return OutlierDetection{
		Interval: 10 * time.Second, BaseEjectionTime: 30 * time.Second, MaxEjectionTime: 300 * time.Second,
		MaxEjectionPercent: 10, ConsecutiveFailures: 5,
	}
}

// DefaultSuccessRate returns A50's defaults: 1.9 standard deviations, every
// outlier ejected, 5 hosts with 100 calls each.
func DefaultSuccessRate() SuccessRate {
	return SuccessRate{StdevFactor: 1900, EnforcementPercentage: 100, MinimumHosts: 5, RequestVolume: 100}
}

// DefaultFailurePercentage returns A50's defaults: over 85% failures, every
// outlier ejected, 5 hosts with 50 calls each. (Envoy and grpc-go enforce
// 0% by default because they turn the algorithm on by default; here the
// block's presence turns it on, so it enforces, as A50 says.)
func DefaultFailurePercentage() FailurePercentage {
	return FailurePercentage{Threshold: 85, EnforcementPercentage: 100, MinimumHosts: 5, RequestVolume: 50}
}

func (o *OutlierDetection) validate() error {
	switch {
	case o.Interval <= 0 || o.BaseEjectionTime <= 0 || o.MaxEjectionTime <= 0:
		return fmt.Errorf("outlier detection: interval, base_ejection_time and max_ejection_time must be positive")
	case o.MaxEjectionPercent < 0 || o.MaxEjectionPercent > 100:
		return fmt.Errorf("outlier detection: max_ejection_percent %d is not from 0 to 100", o.MaxEjectionPercent)
	case o.ConsecutiveFailures < 0:
		return fmt.Errorf("outlier detection: consecutive_failures must not be negative")
	}
	return nil
}

// outlierDetector runs OutlierDetection for one LoadBalancer without a
// goroutine of its own: the call whose outcome crosses an interval's end
// runs the sweep, on the balancer's clock (the simulator's too).
type outlierDetector struct {
	cfg   OutlierDetection
	now   func() int64
	next  atomic.Int64 // when the next sweep is due
	sweep sync.Mutex   // held by the call running a sweep
	rnd   *rand.Rand   // enforcement draws; guarded by the balancer's lock
	state map[*Endpoint]*outlierState
}

type outlierState struct {
	lastSuccesses, lastFailures uint64 // cumulative counts at the last sweep
	multiplier                  int
	ejectedAt                   int64
}

func newOutlierDetector(cfg OutlierDetection, now func() int64, seed uint64) *outlierDetector {
	d := &outlierDetector{cfg: cfg, now: now, rnd: rand.New(rand.NewPCG(seed, seed^0x0d7)), state: map[*Endpoint]*outlierState{}}
	d.next.Store(now() + int64(cfg.Interval))
	return d
}

// observe counts a call's outcome: consecutive failures eject at once, and
// the call that finds an interval over runs the sweep.
func (lb *LoadBalancer) observeOutlier(d *outlierDetector, e *Endpoint, outcome Outcome) {
	switch outcome {
	case Success:
		if e.consecutive.Load() != 0 {
			e.consecutive.Store(0)
		}
	case Failure:
		if n := e.consecutive.Add(1); d.cfg.ConsecutiveFailures > 0 && int(n) == d.cfg.ConsecutiveFailures {
			lb.mu.Lock()
			if !e.ejected.Load() && !e.removed.Load() && lb.mayEject(d) {
				lb.eject(d, e, d.now(), fmt.Sprintf("%d consecutive failures", n))
				lb.publish(lb.allLocked(), true)
			}
			lb.mu.Unlock()
		}
	}
	if now := d.now(); now >= d.next.Load() {
		lb.sweepOutliers(d, now)
	}
}

// sweepOutliers runs one interval's end: returns endpoints whose ejection
// is over, decays the others' multipliers, and ejects by success rate and
// failure percentage.
func (lb *LoadBalancer) sweepOutliers(d *outlierDetector, now int64) {
	if !d.sweep.TryLock() {
		return // another call is sweeping
	}
	defer d.sweep.Unlock()
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if now < d.next.Load() {
		return
	}
	d.next.Store(now + int64(d.cfg.Interval))
	all := lb.allLocked()
	type volume struct {
		e                   *Endpoint
		successes, failures float64
	}
	counts := make([]volume, 0, len(all))
	present := make(map[*Endpoint]bool, len(all))
	for _, e := range all {
		present[e] = true
		st := d.stateOf(e)
		c := e.Outcomes()
		counts = append(counts, volume{e, float64(c.Successes - st.lastSuccesses), float64(c.Failures - st.lastFailures)})
		st.lastSuccesses, st.lastFailures = c.Successes, c.Failures
	}
	for e := range d.state {
		if !present[e] {
			delete(d.state, e)
		}
	}
	changed := false
	if sr := d.cfg.SuccessRate; sr != nil {
		var rates []float64
		for _, v := range counts {
			if v.successes+v.failures >= float64(sr.RequestVolume) {
				rates = append(rates, v.successes/(v.successes+v.failures))
			}
		}
		if len(rates) >= sr.MinimumHosts && len(rates) > 0 {
			mean, variance := 0.0, 0.0
			for _, r := range rates {
				mean += r
			}
			mean /= float64(len(rates))
			for _, r := range rates {
				variance += (r - mean) * (r - mean)
			}
			threshold := mean - math.Sqrt(variance/float64(len(rates)))*float64(sr.StdevFactor)/1000
			for _, v := range counts {
				total := v.successes + v.failures
				if total >= float64(sr.RequestVolume) && v.successes/total < threshold && lb.mayEject(d) && d.enforce(sr.EnforcementPercentage) {
					changed = lb.eject(d, v.e, now, fmt.Sprintf("success rate %.1f%% below %.1f%%", 100*v.successes/total, 100*threshold)) || changed
				}
			}
		}
	}
	if fp := d.cfg.FailurePercentage; fp != nil {
		hosts := 0
		for _, v := range counts {
			if v.successes+v.failures >= float64(fp.RequestVolume) {
				hosts++
			}
		}
		if hosts >= fp.MinimumHosts {
			for _, v := range counts {
				total := v.successes + v.failures
				if total >= float64(fp.RequestVolume) && 100*v.failures/total > float64(fp.Threshold) && lb.mayEject(d) && d.enforce(fp.EnforcementPercentage) {
					changed = lb.eject(d, v.e, now, fmt.Sprintf("%.0f%% of %d calls failed", 100*v.failures/total, int(total))) || changed
				}
			}
		}
	}
	for _, e := range all {
		st := d.stateOf(e)
		switch {
		case e.ejected.Load():
			limit := max(d.cfg.BaseEjectionTime, d.cfg.MaxEjectionTime)
			if now-st.ejectedAt >= int64(min(d.cfg.BaseEjectionTime*time.Duration(st.multiplier), limit)) {
				e.ejected.Store(false)
				e.consecutive.Store(0)
				changed = true
				lb.event(e, "returns from ejection")
			}
		case st.multiplier > 0:
			st.multiplier--
		}
	}
	if changed {
		lb.publish(all, true)
	}
}

func (d *outlierDetector) stateOf(e *Endpoint) *outlierState {
	st, ok := d.state[e]
	if !ok {
		st = &outlierState{}
		d.state[e] = st
	}
	return st
}

// enforce draws whether an ejection the algorithm asks for happens.
func (d *outlierDetector) enforce(percent int) bool {
	return percent >= 100 || d.rnd.IntN(100) < percent
}

// mayEject reports whether one more endpoint may be ejected without
// exceeding max_ejection_percent; the caller holds lb.mu.
func (lb *LoadBalancer) mayEject(d *outlierDetector) bool {
	all := lb.allLocked()
	ejected := 0
	for _, e := range all {
		if e.ejected.Load() {
			ejected++
		}
	}
	return len(all) > 0 && float64(ejected)*100/float64(len(all)) < float64(d.cfg.MaxEjectionPercent)
}

// eject takes e out until its ejection time is over; the caller holds
// lb.mu and publishes.
func (lb *LoadBalancer) eject(d *outlierDetector, e *Endpoint, now int64, why string) bool {
	if e.ejected.Load() {
		return false
	}
	st := d.stateOf(e)
	st.multiplier++
	st.ejectedAt = now
	e.ejected.Store(true)
	e.ejections.Add(1)
	limit := max(d.cfg.BaseEjectionTime, d.cfg.MaxEjectionTime)
	lb.event(e, fmt.Sprintf("ejected for %s (%s)", min(d.cfg.BaseEjectionTime*time.Duration(st.multiplier), limit), why))
	return true
}
