package lb

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// peakEWMA picks, among ChoiceCount distinct endpoints drawn at random (or
// all of them), the one with the least cost: its peak-EWMA latency
// estimate times its calls in flight plus one, divided by its weight
// (tower's and Finagle's PeakEwma, Linkerd's default balancer). The
// estimate jumps to any slower sample at once and otherwise follows
// samples, and it decays towards zero with time constant Decay, so an
// endpoint that was avoided becomes attractive again and gets probed.
// While calls wait on an endpoint, the time since its last answer counts
// as a sample too, so a server that hangs is left alone within a handful
// of calls rather than looking as fast as it last was.
type peakEWMA struct {
	strategyBase
	choices        int
	tau            float64 // decay, in ticks
	defaultRTT     float64 // nanoseconds
	failurePenalty time.Duration
	slowStart      *SlowStart   // applied in the cost, not by redrawing
	now            func() int64 // nanoseconds
	// clock is the latest time an outcome was observed, in nanoseconds: a
	// pick reads it instead of the clock, which costs more than the pick.
	clock atomic.Int64
}

func newPeakEWMA(cfg StrategyConfig, now func() int64) *peakEWMA {
	p := &peakEWMA{choices: cfg.ChoiceCount, failurePenalty: cfg.FailurePenalty, slowStart: cfg.SlowStart}
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

func (s *peakEWMA) readsLoad() bool { return true }

func (s *peakEWMA) rampsItself() bool { return true }

// An estimate packs a float32 latency in nanoseconds (high half) with the
// tick it was last updated at (low half, wrapping after five days, which
// differences of uint32 tolerate), so that one atomic word holds both and
// an update is one compare-and-swap.
func packEstimate(ns float64, atMS uint32) uint64 {
	return uint64(math.Float32bits(float32(ns)))<<32 | uint64(atMS)
}

func unpackEstimate(v uint64) (ns float64, atMS uint32) {
	return float64(math.Float32frombits(uint32(v >> 32))), uint32(v)
}

// tick is the resolution of estimate times and of the clock picks read:
// fine enough that a server which stops answering stands out within a
// fraction of a millisecond of calls.
const tick = 100 * time.Microsecond

func ticks(ns int64) uint32 { return uint32(ns / int64(tick)) }

// decayed is the estimate as of nowMS: it fades towards zero.
func (s *peakEWMA) decayed(v uint64, nowMS uint32) float64 {
	ns, at := unpackEstimate(v)
	elapsed := float64(int32(nowMS - at))
	if elapsed*256 < s.tau { // under 0.4%: not worth an exp
		return ns
	}
	return ns * math.Exp(-elapsed/s.tau)
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
			prev, at := unpackEstimate(old)
			if sample < prev {
				d := math.Exp(-float64(int32(nowMS-at)) / s.tau)
				est = prev*d + sample*(1-d)
			}
		}
		if e.rtt.CompareAndSwap(old, packEstimate(est, nowMS)) {
			return
		}
	}
}

func (s *peakEWMA) NewPicker(eligible []*Endpoint) Picker {
	nowMS := ticks(s.clock.Load())
	for _, e := range eligible {
		// An endpoint without samples starts at the default estimate,
		// which decays like any other.
		e.rtt.CompareAndSwap(0, packEstimate(s.defaultRTT, nowMS))
	}
	p := &peakEWMAPicker{s: s, eps: eligible, choices: s.choices}
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
	s       *peakEWMA
	eps     []*Endpoint
	choices int // 0: compare every endpoint
	_       cacheLinePad
	next    atomic.Uint64 // rotating scan start, so ties share picks
	_       cacheLinePad
	rnd     splitmix
}

func (p *peakEWMAPicker) cost(e *Endpoint, nowMS uint32) float64 {
	weight := float64(e.Weight)
	if p.s.slowStart != nil {
		if start := e.rampStart.Load(); start != 0 {
			weight *= p.s.slowStart.factor(p.s.clock.Load() - start)
		}
	}
	v := e.rtt.Load()
	est := p.s.decayed(v, nowMS)
	inFlight := e.inFlight()
	if inFlight > 0 {
		// Calls are waiting, and none has ended for this long: a server
		// that stopped answering is at least this slow, whatever its past.
		_, at := unpackEstimate(v)
		if stall := float64(int32(nowMS-at)) * float64(tick); stall > 1.25*est {
			est = stall
		}
	}
	return est * float64(inFlight+1) / weight
}

func (p *peakEWMAPicker) Pick(triedList []*Endpoint) *Endpoint {
	nowMS := ticks(p.s.clock.Load())
	n := len(p.eps)
	var best *Endpoint
	var bestCost float64
	if p.choices == 2 && len(triedList) == 0 {
		// The common case in one random word: two distinct endpoints,
		// either of which may come first.
		r := p.rnd.next()
		i := below(r, n)                          // from r's high bits
		j := below(bits.RotateLeft64(r, 32), n-1) // from its low bits
		if j >= i {
			j++
		}
		a, b := p.eps[i], p.eps[j]
		if p.cost(b, nowMS) < p.cost(a, nowMS) {
			return b
		}
		return a
	}
	consider := func(e *Endpoint) {
		if len(triedList) != 0 && tried(triedList, e) {
			return
		}
		if c := p.cost(e, nowMS); best == nil || c < bestCost {
			best, bestCost = e, c
		}
	}
	if p.choices == 0 {
		start := int(p.next.Add(1) % uint64(n))
		for _, e := range p.eps[start:] {
			consider(e)
		}
		for _, e := range p.eps[:start] {
			consider(e)
		}
	} else {
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
			consider(p.eps[(t+rotate)%n])
		}
		for range p.choices - k {
			consider(p.eps[below(p.rnd.next(), n)])
		}
	}
	if best == nil {
		return firstUntried(p.eps, 0, triedList)
	}
	return best
}
