package lb

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"
)

// WeightedRoundRobin is grpc-go's weighted_round_robin (gRFC A58): each
// endpoint's weight comes from the load it reports (ORCA), as
// qps / (utilization + eps/qps × error_utilization_penalty), and picks
// follow the weights.
const WeightedRoundRobin = "weighted_round_robin"

// Defaults of weighted_round_robin, gRFC A58's.
const (
	DefaultBlackoutPeriod          = 10 * time.Second
	DefaultWeightExpirationPeriod  = 3 * time.Minute
	DefaultWeightUpdatePeriod      = time.Second
	DefaultErrorUtilizationPenalty = 1.0
	DefaultOOBReportingPeriod      = 10 * time.Second
	// MinWeightUpdatePeriod is the shortest weight_update_period, as
	// grpc-go clamps it.
	MinWeightUpdatePeriod = 100 * time.Millisecond
)

// LoadReport is the load an endpoint reports of itself: an ORCA load
// report's fields that weighted_round_robin reads.
type LoadReport struct {
	// CPUUtilization and ApplicationUtilization are shares of capacity
	// (1.0 is fully used; more is allowed); the application's, when set,
	// is used rather than the CPU's, as in gRFC A58.
	CPUUtilization         float64
	ApplicationUtilization float64
	// QPS and EPS are the requests and errors the endpoint answers a
	// second.
	QPS float64
	EPS float64
}

// WeightedRoundRobinConfig holds weighted_round_robin's settings, with
// gRFC A58's names; zero values mean the defaults.
type WeightedRoundRobinConfig struct {
	// BlackoutPeriod is how long an endpoint must have reported before its
	// weight counts (it gets the mean weight until then).
	BlackoutPeriod time.Duration `json:"blackout_period,omitempty"`
	// WeightExpirationPeriod forgets an endpoint's weight when it has not
	// reported for this long (the blackout then starts over).
	WeightExpirationPeriod time.Duration `json:"weight_expiration_period,omitempty"`
	// WeightUpdatePeriod is how often the weights are recomputed.
	WeightUpdatePeriod time.Duration `json:"weight_update_period,omitempty"`
	// ErrorUtilizationPenalty weighs the reported errors per request
	// against utilization; nil means 1.0.
	ErrorUtilizationPenalty *float64 `json:"error_utilization_penalty,omitempty"`
	// EnableOOBLoadReport makes the gRPC layer ask each endpoint for its
	// load every OOBReportingPeriod on a stream of its own (ORCA's
	// out-of-band service) instead of reading it from each call's
	// trailers.
	EnableOOBLoadReport bool          `json:"enable_oob_load_report,omitempty"`
	OOBReportingPeriod  time.Duration `json:"oob_reporting_period,omitempty"`
}

// withDefaults fills in A58's defaults. A blackout period of zero is
// meaningful (weights count at once), so only a nil config takes the
// default blackout.
func (c *WeightedRoundRobinConfig) withDefaults() WeightedRoundRobinConfig {
	out := WeightedRoundRobinConfig{BlackoutPeriod: DefaultBlackoutPeriod}
	if c != nil {
		out = *c
	}
	if out.WeightExpirationPeriod == 0 {
		out.WeightExpirationPeriod = DefaultWeightExpirationPeriod
	}
	if out.WeightUpdatePeriod == 0 {
		out.WeightUpdatePeriod = DefaultWeightUpdatePeriod
	}
	out.WeightUpdatePeriod = max(out.WeightUpdatePeriod, MinWeightUpdatePeriod)
	if out.ErrorUtilizationPenalty == nil {
		p := DefaultErrorUtilizationPenalty
		out.ErrorUtilizationPenalty = &p
	}
	if out.OOBReportingPeriod == 0 {
		out.OOBReportingPeriod = DefaultOOBReportingPeriod
	}
	return out
}

func (c *WeightedRoundRobinConfig) validate() error {
	switch {
	case c.BlackoutPeriod < 0 || c.WeightExpirationPeriod < 0 || c.WeightUpdatePeriod < 0 || c.OOBReportingPeriod < 0:
		return fmt.Errorf("weighted_round_robin's periods must not be negative")
	case c.ErrorUtilizationPenalty != nil && !(*c.ErrorUtilizationPenalty >= 0 && !math.IsInf(*c.ErrorUtilizationPenalty, 0)):
		return fmt.Errorf("error_utilization_penalty must be zero or positive, not %g", *c.ErrorUtilizationPenalty)
	case c.OOBReportingPeriod != 0 && !c.EnableOOBLoadReport:
		return fmt.Errorf("oob_reporting_period applies only with enable_oob_load_report = true")
	}
	return nil
}

// loadWeight is what an endpoint's load reports say, on the balancer's
// clock; weighted_round_robin reads it.
type loadWeight struct {
	weight        atomic.Uint64 // math.Float64bits of the last weight
	lastUpdated   atomic.Int64  // 0: never
	nonEmptySince atomic.Int64  // 0: since the last expiry, no report
}

// ReportLoad takes a load report from e (an ORCA report, from a call's
// trailers or an out-of-band stream): weighted_round_robin turns it into
// e's weight; other strategies ignore it. A report without utilization or
// QPS says nothing and is ignored, as in gRFC A58.
func (lb *LoadBalancer) ReportLoad(e *Endpoint, r LoadReport) {
	w, ok := lb.rules.Load().strategy.(*weightedRoundRobin)
	if !ok {
		return
	}
	utilization := r.ApplicationUtilization
	if utilization <= 0 {
		utilization = r.CPUUtilization
	}
	if !(utilization > 0) || !(r.QPS > 0) {
		return
	}
	weight := r.QPS / (utilization + r.EPS/r.QPS**w.cfg.ErrorUtilizationPenalty)
	if math.IsInf(weight, 0) || math.IsNaN(weight) {
		return
	}
	now := lb.now() + 1 // never 0, which means "never"
	if last := e.reported.lastUpdated.Load(); last == 0 || now-last >= int64(w.cfg.WeightExpirationPeriod) {
		// The first report, or the first after the weight expired: the
		// blackout period starts.
		e.reported.nonEmptySince.Store(now)
	}
	e.reported.weight.Store(math.Float64bits(weight))
	e.reported.lastUpdated.Store(now)
	w.maybeUpdate(now)
}

// weightedRoundRobin is gRFC A58's policy. Its pickers recompute their
// weights when the strategy's generation moves on, at most once a
// weight_update_period: load reports move it, and so does every
// clockCheckEvery-th pick, for weights to expire and for out-of-band
// reports, which may come only every few seconds.
type weightedRoundRobin struct {
	strategyBase
	cfg WeightedRoundRobinConfig
	now func() int64 // the balancer's clock
	_   cacheLinePad
	// generation counts weight updates; at is the balancer's time of the
	// last, which pickers judge blackout and expiry by.
	generation atomic.Uint64
	at         atomic.Int64
	nextUpdate atomic.Int64
}

func newWeightedRoundRobin(cfg StrategyConfig, now func() int64) *weightedRoundRobin {
	if now == nil {
		now = monotonicNow()
	}
	return &weightedRoundRobin{cfg: cfg.WeightedRoundRobin.withDefaults(), now: now}
}

// LoadReports says how the balancer wants endpoints' load reports: none
// (ok false), from every call's trailers, or, with an oobPeriod, on an
// out-of-band stream per endpoint at that period. The gRPC layer reads
// them and hands them to ReportLoad.
func (lb *LoadBalancer) LoadReports() (oobPeriod time.Duration, ok bool) {
	w, ok := lb.rules.Load().strategy.(*weightedRoundRobin)
	if !ok {
		return 0, false
	}
	if w.cfg.EnableOOBLoadReport {
		return w.cfg.OOBReportingPeriod, true
	}
	return 0, true
}

// maybeUpdate moves the generation on when a weight_update_period has
// passed since it last did.
func (s *weightedRoundRobin) maybeUpdate(now int64) {
	next := s.nextUpdate.Load()
	if now < next || !s.nextUpdate.CompareAndSwap(next, now+int64(s.cfg.WeightUpdatePeriod)) {
		return
	}
	s.at.Store(now)
	s.generation.Add(1)
}

func (s *weightedRoundRobin) NewPicker(eligible []*Endpoint) Picker {
	p := &wrrPicker{eps: eligible, s: s}
	p.next.Store(s.seeds.next())
	p.refresh(s.generation.Load())
	return p
}

// wrrPicker picks with a static stride schedule (gRPC C++'s and
// grpc-go's): a counter walks the endpoints in turn, and an endpoint is
// taken on a pass in proportion to its weight over the heaviest's, the
// passes it skips spread evenly by a multiplicative step. Building it is
// only scaling the weights; a pick is an atomic add and, on average, the
// heaviest weight over the mean of tries.
type wrrPicker struct {
	eps []*Endpoint
	s   *weightedRoundRobin
	_   cacheLinePad
	// sched is the current schedule, gen the generation it was built at.
	sched atomic.Pointer[strideSchedule]
	gen   atomic.Uint64
	_     cacheLinePad
	next  atomic.Uint64
}

// strideSchedule holds weights scaled so the heaviest is maxStride; nil
// weights is round robin (fewer than two endpoints have a weight, or all
// have the same).
type strideSchedule struct {
	weights []uint16
}

const maxStride = math.MaxUint16

// refresh rebuilds the schedule for generation gen, unless another pick
// is already doing it (that pick's schedule then serves).
func (p *wrrPicker) refresh(gen uint64) {
	old := p.gen.Load()
	if p.sched.Load() != nil && (old == gen || !p.gen.CompareAndSwap(old, gen)) {
		return
	}
	p.gen.Store(gen)
	p.sched.Store(newStrideSchedule(p.eps, p.s.cfg, p.s.at.Load()))
}

// endpointWeight is e's weight at now: zero when it has no usable
// report (none yet, in its blackout period, or expired).
func endpointWeight(e *Endpoint, cfg WeightedRoundRobinConfig, now int64) float64 {
	last := e.reported.lastUpdated.Load()
	if last == 0 {
		return 0
	}
	if now-last >= int64(cfg.WeightExpirationPeriod) {
		// Stale: the blackout starts over when reports resume.
		e.reported.nonEmptySince.Store(0)
		return 0
	}
	if since := e.reported.nonEmptySince.Load(); cfg.BlackoutPeriod > 0 && (since == 0 || now-since < int64(cfg.BlackoutPeriod)) {
		return 0
	}
	return math.Float64frombits(e.reported.weight.Load())
}

func newStrideSchedule(eps []*Endpoint, cfg WeightedRoundRobinConfig, now int64) *strideSchedule {
	weights := make([]float64, len(eps))
	var sum, heaviest float64
	known := 0
	for i, e := range eps {
		w := endpointWeight(e, cfg, now)
		weights[i] = w
		if w > 0 {
			sum += w
			heaviest = max(heaviest, w)
			known++
		}
	}
	if known < 2 {
		return &strideSchedule{}
	}
	// An endpoint without a usable weight gets the mean of the others'.
	scale := maxStride / heaviest
	mean := uint16(math.Round(sum / float64(known) * scale))
	out := &strideSchedule{weights: make([]uint16, len(eps))}
	equal := true
	for i, w := range weights {
		out.weights[i] = mean
		if w > 0 {
			out.weights[i] = uint16(max(math.Round(w*scale), 1))
		}
		equal = equal && out.weights[i] == out.weights[0]
	}
	if equal {
		return &strideSchedule{}
	}
	return out
}

// clockCheckEvery is how many picks pass between two looks at the clock,
// which costs more than the pick itself.
const clockCheckEvery = 256

// strideOffset staggers the endpoints' skipped passes, so that endpoints
// of equal weight do not skip the same passes.
const strideOffset = maxStride / 2

func (p *wrrPicker) Pick(triedList []*Endpoint) *Endpoint {
	if g := p.s.generation.Load(); g != p.gen.Load() {
		p.refresh(g)
	}
	sched := p.sched.Load()
	n := uint64(len(p.eps))
	for range 4 * n {
		i := p.next.Add(1)
		if i%clockCheckEvery == 0 {
			p.s.maybeUpdate(p.s.now())
		}
		index := i % n
		if sched.weights != nil {
			w := uint64(sched.weights[index])
			if (w*(i/n)+index*strideOffset)%maxStride < maxStride-w {
				continue
			}
		}
		e := p.eps[index]
		if len(triedList) == 0 || !tried(triedList, e) {
			return e
		}
	}
	return firstUntried(p.eps, int(p.next.Load()%n), triedList)
}
