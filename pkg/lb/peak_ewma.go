package lb

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// peakEWMA picks, among ChoiceCount distinct endpoints drawn at random (or
// all of them), the one with the least cost: its peak-EWMA latency
// estimate times (its calls in flight plus one) to the power
// ActiveRequestBias, divided by its weight (with a bias of 1, tower's and
// Finagle's PeakEwma, Linkerd's default balancer; the default is
// DefaultPeakEWMABias). The estimate jumps to any slower sample at
// once and otherwise follows samples, and it decays towards zero with time
// constant Decay, so an endpoint that was avoided becomes attractive again
// and gets probed. While calls wait on an endpoint, the time since its last
// answer counts as a sample too, so a server that hangs is left alone
// within a handful of calls rather than looking as fast as it last was.
//
// One refinement over tower's: a sample weighs at least minSampleWeight,
// so that a busy endpoint's estimate does not stick at its rarest peak
// while a quiet one's follows its typical answer, which would make busy
// fast endpoints look slower, relative to quiet slow ones, than they are.
type peakEWMA struct {
	strategyBase
	choices        int
	tau            float64 // decay, in ticks
	defaultRTT     float64 // nanoseconds
	failurePenalty time.Duration
	bias           float64      // exponent of (in flight + 1)
	slowStart      *SlowStart   // applied in the cost, not by redrawing
	now            func() int64 // nanoseconds
	// clock is the latest time an outcome was observed, in nanoseconds: a
	// pick reads it instead of the clock, which costs more than the pick.
	clock atomic.Int64
}

func newPeakEWMA(cfg StrategyConfig, now func() int64) *peakEWMA {
	p := &peakEWMA{choices: cfg.ChoiceCount, failurePenalty: cfg.FailurePenalty, slowStart: cfg.SlowStart, bias: DefaultPeakEWMABias}
	if cfg.ActiveRequestBias != nil {
		p.bias = *cfg.ActiveRequestBias
	}
	if p.choices == 0 {
		p.choices = DefaultPeakEWMAChoices
	}
	decay, rtt := cfg.Decay, cfg.DefaultRTT
	if decay == 0 {
		decay = DefaultDecay
	}
	if rtt == 0 {
		rtt = DefaultRTT
	}
	if p.failurePenalty == 0 {
		p.failurePenalty = DefaultFailurePenalty
	}
	p.tau, p.defaultRTT = float64(decay)/float64(tick), float64(rtt)
	p.now = now
	if p.now == nil {
		p.now = monotonicNow()
	}
	p.clock.Store(p.now())
	return p
}

// DefaultPeakEWMAChoices is peak_ewma's choice count when none is set:
// tower's and Finagle's power of two choices.
const DefaultPeakEWMAChoices = 2

// minSampleWeight is the least weight a sample has in the estimate, however
// soon it follows the previous one: a peak fades within a few hundred
// answers on a busy endpoint, as it does within a decay period on a quiet
// one. Without it, an endpoint answering a thousand calls a second keeps
// its slowest answer of the last ten seconds (its 99.99th percentile)
// while one answering twenty keeps about its 99th, and the busy fast
// endpoints look only five times faster than a slow one that is ten times
// slower; with it, both estimates sit near the same percentile.
const minSampleWeight = 0.01

// DefaultPeakEWMABias is peak_ewma's active_request_bias when none is set:
// the cost grows with the square root of the calls in flight, not in
// proportion (tower's and Finagle's cost, which active_request_bias = 1
// gives). A linear cost models a server that answers one call at a time;
// gRPC servers answer many at once without slowing until they saturate
// (and then their latency shows it). With it, a client keeping a dozen
// calls in flight on each fast server always keeps one on a server ten
// times slower, or on one that fails at once with FailurePenalty:
// docs/strategies.md has the figures of both.
const DefaultPeakEWMABias = 0.5

func (s *peakEWMA) readsLoad() bool { return true }

func (s *peakEWMA) rampsItself() bool { return true }

// An estimate packs a float32 latency in nanoseconds (high half) with the
// tick it was last updated at (low half, wrapping after five days, which
// differences of uint32 tolerate), so that one atomic word holds both and
// an update is one compare-and-swap. A guess (DefaultRTT, before any
// sample) is stored negated, so that the first sample replaces it rather
// than blending with it.
func packEstimate(ns float64, atMS uint32) uint64 {
	return uint64(math.Float32bits(float32(ns)))<<32 | uint64(atMS)
}

// unpackEstimate returns the estimate's latency and whether it is a guess.
func unpackEstimate(v uint64) (ns float64, atMS uint32, guess bool) {
	ns = float64(math.Float32frombits(uint32(v >> 32)))
	return math.Abs(ns), uint32(v), ns < 0
}

// tick is the resolution of estimate times and of the clock picks read:
// fine enough that a server which stops answering stands out within a
// fraction of a millisecond of calls.
const tick = 100 * time.Microsecond

func ticks(ns int64) uint32 { return uint32(ns / int64(tick)) }

// decayed is the estimate as of nowMS, which fades towards zero, and the
// ticks since it was last updated.
func (s *peakEWMA) decayed(v uint64, nowMS uint32) (ns float64, elapsed int32) {
	ns, at, _ := unpackEstimate(v)
	elapsed = int32(nowMS - at)
	if float64(elapsed)*256 >= s.tau { // under 0.4% of decay: not worth an exp
		ns *= math.Exp(-float64(elapsed) / s.tau)
	}
	return ns, elapsed
}

// ObserveOutcome folds a finished call's latency into its endpoint's
// estimate. A failure counts as at least FailurePenalty; a neutral result
// says nothing of the endpoint's speed.
func (s *peakEWMA) ObserveOutcome(e *Endpoint, took time.Duration, outcome Outcome) {
	switch outcome {
	case Neutral:
		return
	case Failure:
		took = max(took, s.failurePenalty)
	}
	now := s.now()
	if now-s.clock.Load() >= int64(tick) {
		s.clock.Store(now)
	}
	nowMS, sample := ticks(now), float64(took)
	for {
		old := e.rtt.Load()
		est := sample
		if old != 0 {
			prev, at, guess := unpackEstimate(old)
			if sample < prev && !guess {
				d := 1 - minSampleWeight
				if elapsed := float64(int32(nowMS - at)); elapsed > s.tau*minSampleWeight {
					// Only then can e^(-elapsed/tau) fall below 1 - minSampleWeight.
					d = min(math.Exp(-elapsed/s.tau), d)
				}
				est = prev*d + sample*(1-d)
			}
		}
		if e.rtt.CompareAndSwap(old, packEstimate(est, nowMS)) {
			return
		}
	}
}

// forget drops the estimate of an endpoint that returns from unhealthy or
// ejected: it describes the failures that took it out (each at least
// FailurePenalty), and would keep it idle for several decay periods after
// it recovered. It starts again from DefaultRTT, and its first answer
// says how it is now.
func (s *peakEWMA) forget(e *Endpoint) { e.rtt.Store(0) }

func (s *peakEWMA) NewPicker(eligible []*Endpoint) Picker {
	nowMS := ticks(s.clock.Load())
	for _, e := range eligible {
		// An endpoint without samples starts at the default estimate,
		// which decays like any other.
		e.rtt.CompareAndSwap(0, packEstimate(-s.defaultRTT, nowMS))
	}
	p := &peakEWMAPicker{s: s, eps: eligible, choices: s.choices, slowStart: s.slowStart, bias: s.bias,
		perWeight: make([]float64, len(eligible))}
	for i, e := range eligible {
		// Read here, not from the endpoint on every pick: the weight sits
		// on another cache line than the estimate and the load.
		p.perWeight[i] = 1 / float64(e.Weight)
		if p.bias == 0.5 {
			p.perWeight[i] *= p.perWeight[i]
		}
	}
	if p.choices >= len(eligible) {
		p.choices = 0
	}
	p.next.Store(s.seeds.next())
	p.rnd.seed(&s.strategyBase)
	return p
}

// maxDistinctChoices bounds the draws kept distinct; more choices than
// this draw the rest with repetition.
const maxDistinctChoices = 16

type peakEWMAPicker struct {
	s         *peakEWMA
	eps       []*Endpoint
	perWeight []float64 // 1 / weight (squared for bias 0.5), by index in eps
	choices   int       // 0: compare every endpoint
	bias      float64
	slowStart *SlowStart
	_         cacheLinePad
	next      atomic.Uint64 // rotating scan start, so ties share picks
	_         cacheLinePad
	rnd       splitmix
}

// rank orders endpoints as their costs do: it is the cost itself, or for
// the default bias of 0.5 its square, which needs no square root.
func (p *peakEWMAPicker) rank(i int, nowMS uint32) float64 {
	e := p.eps[i]
	perWeight := p.perWeight[i]
	if p.slowStart != nil {
		if start := e.rampStart.Load(); start != 0 {
			f := p.slowStart.factor(p.s.clock.Load() - start)
			if p.bias == 0.5 {
				f *= f
			}
			perWeight /= f
		}
	}
	est, elapsed := p.s.decayed(e.rtt.Load(), nowMS)
	inFlight := e.inFlight()
	if inFlight > 0 {
		// Calls are waiting, and none has ended for this long: a server
		// that stopped answering is at least this slow, whatever its past.
		if stall := float64(elapsed) * float64(tick); stall > 1.25*est {
			est = stall
		}
	}
	load := float64(inFlight + 1)
	switch p.bias {
	case 1:
		return est * load * perWeight
	case 0.5:
		return est * est * load * perWeight
	}
	return est * math.Pow(load, p.bias) * perWeight
}

func (p *peakEWMAPicker) Pick(triedList []*Endpoint) *Endpoint {
	nowMS := ticks(p.s.clock.Load())
	n := len(p.eps)
	if p.choices == 2 && len(triedList) == 0 {
		// The common case in one random word: two distinct endpoints,
		// either of which may come first.
		r := p.rnd.next()
		i := below(r, n)                          // from r's high bits
		j := below(bits.RotateLeft64(r, 32), n-1) // from its low bits
		if j >= i {
			j++
		}
		if p.rank(j, nowMS) < p.rank(i, nowMS) {
			return p.eps[j]
		}
		return p.eps[i]
	}
	best, bestCost := -1, 0.0
	consider := func(i int) {
		if len(triedList) != 0 && tried(triedList, p.eps[i]) {
			return
		}
		if c := p.rank(i, nowMS); best < 0 || c < bestCost {
			best, bestCost = i, c
		}
	}
	if p.choices == 0 {
		start := int(p.next.Add(1) % uint64(n))
		for i := start; i < n; i++ {
			consider(i)
		}
		for i := range start {
			consider(i)
		}
		if best < 0 {
			return firstUntried(p.eps, 0, triedList)
		}
		return p.eps[best]
	}
	// Distinct draws (Floyd's sampling, as tower's sample_floyd2): a
	// second look at the same endpoint would waste a choice. Floyd's
	// subset is uniform but its order is not (the last index only
	// comes late), and ties go to the first looked at: a random
	// rotation makes every endpoint as likely to come first.
	var drawn [maxDistinctChoices]int
	k := min(p.choices, maxDistinctChoices)
	rotate := below(p.rnd.next(), n)
	for j := n - k; j < n; j++ {
		t := below(p.rnd.next(), j+1)
		for _, d := range drawn[:k-(n-j)] {
			if d == t {
				t = j
				break
			}
		}
		drawn[k-(n-j)] = t
		consider((t + rotate) % n)
	}
	for range p.choices - k {
		consider(below(p.rnd.next(), n))
	}
	if best < 0 {
		return firstUntried(p.eps, 0, triedList)
	}
	return p.eps[best]
}
