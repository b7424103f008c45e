package lb

import (
	"cmp"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// Strategy kinds understood by NewStrategy.
const (
	RoundRobin       = "round_robin"
	Random           = "random"
	Weighted         = "weighted"
	LeastConnections = "least_connections"
	PeakEWMA         = "peak_ewma"
)

// StrategyKinds lists every strategy kind, for help texts and suggestions.
func StrategyKinds() []string {
	return []string{RoundRobin, Random, Weighted, LeastConnections, PeakEWMA, RingHash, Maglev, WeightedRoundRobin}
}

// A Strategy builds Pickers. The LoadBalancer calls NewPicker each time the
// set of eligible endpoints changes; the Picker then serves every pick until
// the next change.
type Strategy interface {
	// Name returns the strategy kind, such as "round_robin".
	Name() string
	// NewPicker returns a picker over eligible, which is never empty and
	// must not be modified afterwards.
	NewPicker(eligible []*Endpoint) Picker
}

// A Picker chooses one endpoint from a fixed set. Pick must be safe for
// concurrent use, must not block and must not allocate.
type Picker interface {
	// Pick returns an endpoint that is not in tried, or, when every
	// endpoint has been tried, any endpoint. tried is nil on a first
	// attempt and lists the endpoints that already failed on a retry.
	Pick(tried []*Endpoint) *Endpoint
}

// StrategyOptions are what a strategy needs besides its configuration.
type StrategyOptions struct {
	// Seed makes the strategy's random choices (starting offsets, random
	// picks, sampled choices) repeatable, as the simulator needs. Zero
	// draws them from the runtime's per-thread generator instead, which
	// concurrent picks do not contend on.
	Seed uint64
	// Now is the clock of strategies that learn latencies over time, in
	// nanoseconds; nil is the monotonic wall clock. The simulator passes
	// its simulated clock.
	Now func() int64
}

// NewStrategy returns the strategy cfg describes.
func NewStrategy(cfg StrategyConfig, opts StrategyOptions) (Strategy, error) {
	kind := cfg.Kind
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	seed, seeded := opts.Seed, opts.Seed != 0
	if !seeded {
		seed = rand.Uint64()
	}
	var s Strategy
	var base *strategyBase
	switch kind {
	case RoundRobin:
		rr := &roundRobin{}
		s, base = rr, &rr.strategyBase
	case Random:
		r := &random{}
		s, base = r, &r.strategyBase
	case Weighted:
		w := &weighted{}
		s, base = w, &w.strategyBase
	case LeastConnections:
		lc := &leastConnections{choices: cfg.ChoiceCount, bias: 1, slowStart: cfg.SlowStart, now: opts.Now}
		if lc.now == nil {
			lc.now = monotonicNow()
		}
		if cfg.ActiveRequestBias != nil {
			lc.bias = *cfg.ActiveRequestBias
		}
		s, base = lc, &lc.strategyBase
	case PeakEWMA:
		pe := newPeakEWMA(cfg, opts.Now)
		s, base = pe, &pe.strategyBase
	case RingHash, Maglev:
		h := newHashing(cfg)
		s, base = h, &h.strategyBase
	case WeightedRoundRobin:
		w := newWeightedRoundRobin(cfg, opts.Now)
		s, base = w, &w.strategyBase
	default:
		return nil, fmt.Errorf("unknown strategy %q (known: %s)", kind, strings.Join(StrategyKinds(), ", "))
	}
	base.kind = kind
	base.seeded = seeded
	base.seeds.seeded = true // the seed sequence itself is always a splitmix
	base.seeds.state.Store(seed)
	return s, nil
}

type strategyBase struct {
	kind   string
	seeded bool
	seeds  splitmix // one seed per picker, so repeated builds stay deterministic
}

func (s *strategyBase) Name() string { return s.kind }

// cacheLinePad separates a field written on every pick from the read-only
// fields before it; sharing a cache line would make every pick on one core
// evict the other cores' copy of the endpoint list.
type cacheLinePad [64]byte

// splitmix is SplitMix64 over an atomic counter: lock-free, allocation-free
// and repeatable for a seed. Unseeded, it defers to the runtime's
// per-thread generator so that concurrent picks share no counter.
type splitmix struct {
	state  atomic.Uint64
	seeded bool
}

func (s *splitmix) next() uint64 {
	if !s.seeded {
		return rand.Uint64()
	}
	z := s.state.Add(0x9e3779b97f4a7c15)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// seed prepares a picker's generator from its strategy's seed sequence.
func (s *splitmix) seed(from *strategyBase) {
	s.seeded = from.seeded
	s.state.Store(from.seeds.next())
}

// below maps a random 64-bit value onto [0, n) without division (Lemire).
func below(x uint64, n int) int {
	hi, _ := bits.Mul64(x, uint64(n))
	return int(hi)
}

// firstUntried returns the first endpoint at or after start (wrapping) that is
// not in tried, or eps[start] when all were tried.
func firstUntried(eps []*Endpoint, start int, triedList []*Endpoint) *Endpoint {
	for i := start; i < len(eps); i++ {
		if !tried(triedList, eps[i]) {
			return eps[i]
		}
	}
	for i := 0; i < start; i++ {
		if !tried(triedList, eps[i]) {
			return eps[i]
		}
	}
	return eps[start]
}

// --- round_robin ---

type roundRobin struct{ strategyBase }

func (s *roundRobin) NewPicker(eligible []*Endpoint) Picker {
	p := &roundRobinPicker{eps: eligible}
	// A random start keeps a fleet of clients from all hitting the first
	// endpoint together, as grpc-go's round_robin does.
	p.next.Store(s.seeds.next())
	return p
}

type roundRobinPicker struct {
	eps  []*Endpoint
	_    cacheLinePad // keep the counter off eps's cache line: no false sharing
	next atomic.Uint64
}

func (p *roundRobinPicker) Pick(triedList []*Endpoint) *Endpoint {
	i := int(p.next.Add(1) % uint64(len(p.eps)))
	if len(triedList) == 0 {
		return p.eps[i]
	}
	return firstUntried(p.eps, i, triedList)
}

// --- random ---

type random struct{ strategyBase }

func (s *random) NewPicker(eligible []*Endpoint) Picker {
	p := &randomPicker{eps: eligible}
	p.rnd.seed(&s.strategyBase)
	return p
}

type randomPicker struct {
	eps []*Endpoint
	_   cacheLinePad
	rnd splitmix
}

func (p *randomPicker) Pick(triedList []*Endpoint) *Endpoint {
	i := below(p.rnd.next(), len(p.eps))
	if len(triedList) == 0 {
		return p.eps[i]
	}
	return firstUntried(p.eps, i, triedList)
}

// --- least_connections ---

type leastConnections struct {
	strategyBase
	choices   int
	bias      float64
	slowStart *SlowStart // applied in the cost, not by redrawing
	now       func() int64
}

func (s *leastConnections) rampsItself() bool { return true }

// monotonicNow is a nanosecond clock for strategies given none.
func monotonicNow() func() int64 {
	start := time.Now()
	return func() int64 { return int64(time.Since(start)) + 1 }
}

func (s *leastConnections) readsLoad() bool { return true }

func (s *leastConnections) NewPicker(eligible []*Endpoint) Picker {
	p := &leastConnPicker{eps: eligible, choices: s.choices, bias: s.bias, s: s}
	for _, e := range eligible[1:] {
		p.weighted = p.weighted || e.Weight != eligible[0].Weight
	}
	if s.slowStart != nil {
		for _, e := range eligible {
			p.warming = p.warming || e.rampStart.Load() != 0
		}
		p.weighted = p.weighted || p.warming
	}
	p.next.Store(s.seeds.next())
	p.rnd.seed(&s.strategyBase)
	return p
}

type leastConnPicker struct {
	eps     []*Endpoint
	choices int
	// weighted is set when weights differ: then the cost of an endpoint
	// is (in flight + 1)^bias / weight (Envoy's least request), else
	// simply its calls in flight.
	weighted bool
	bias     float64
	warming  bool // some endpoint is in slow start
	s        *leastConnections
	_        cacheLinePad
	next     atomic.Uint64 // rotating scan start: ties go round robin
	_        cacheLinePad
	rnd      splitmix
}

func (p *leastConnPicker) Pick(triedList []*Endpoint) *Endpoint {
	if p.choices >= 2 && p.choices < len(p.eps) {
		if e := p.pickSampled(triedList); e != nil {
			return e
		}
	}
	// Starting the scan one further each time and keeping the first of
	// equal loads makes equally loaded endpoints share picks evenly.
	start := int(p.next.Add(1) % uint64(len(p.eps)))
	var best *Endpoint
	var bestLoad float64
	consider := func(e *Endpoint) {
		if load := p.cost(e); best == nil || load < bestLoad {
			if len(triedList) == 0 || !tried(triedList, e) {
				best, bestLoad = e, load
			}
		}
	}
	for _, e := range p.eps[start:] {
		consider(e)
	}
	for _, e := range p.eps[:start] {
		consider(e)
	}
	if best == nil {
		return p.eps[start]
	}
	return best
}

// pickSampled is power-of-N-choices; nil when every sample was tried.
// cost orders endpoints: the lower, the better.
func (p *leastConnPicker) cost(e *Endpoint) float64 {
	active := float64(e.inFlight())
	if !p.weighted {
		return active
	}
	weight := float64(e.Weight)
	if p.warming {
		if start := e.rampStart.Load(); start != 0 {
			weight *= p.s.slowStart.factor(p.s.now() - start)
		}
	}
	if p.bias == 1 {
		return (active + 1) / weight
	}
	return math.Pow(active+1, p.bias) / weight
}

func (p *leastConnPicker) pickSampled(triedList []*Endpoint) *Endpoint {
	var best *Endpoint
	var bestLoad float64
	for range p.choices {
		e := p.eps[below(p.rnd.next(), len(p.eps))]
		if len(triedList) != 0 && tried(triedList, e) {
			continue
		}
		if load := p.cost(e); best == nil || load < bestLoad {
			best, bestLoad = e, load
		}
	}
	return best
}

// --- weighted ---

// maxScheduleLen bounds the precomputed weighted schedule (4 MiB of
// uint32). Larger periods, which need both many endpoints and large coprime
// weights, are generated live under a mutex instead.
const maxScheduleLen = 1 << 20

type weighted struct{ strategyBase }

// NewPicker precomputes one period of an earliest-deadline-first schedule:
// endpoint i, with weight w_i (divided by the weights' GCD), has its k-th
// deadline at (k+½)/w_i, and the schedule lists endpoints in deadline order.
// Each period holds exactly w_i entries for endpoint i, so any window of
// sum-of-weights consecutive picks matches the weights exactly, and picks of
// one endpoint are spread evenly through the period rather than bunched.
// A pick is then one atomic increment and a table lookup.
func (s *weighted) NewPicker(eligible []*Endpoint) Picker {
	weights := make([]uint64, len(eligible))
	var g uint64
	for i, e := range eligible {
		weights[i] = uint64(e.Weight)
		g = gcd(g, weights[i])
	}
	var period uint64
	for i := range weights {
		weights[i] /= g
		period += weights[i]
	}
	p := &weightedPicker{eps: eligible}
	if period <= maxScheduleLen {
		p.table = edfTable(weights, period)
		p.next.Store(s.seeds.next() % period)
	} else {
		p.live = &liveSchedule{edf: newEDF(weights)}
	}
	return p
}

// edfTable lists one period of the earliest-deadline-first schedule: every
// deadline (2k+1)/(2w_i), k < w_i, in increasing order, ties to the lower
// index, exactly the sequence the edf heap emits. Placing deadlines into
// one bucket per slot of [0,1) makes that a linear-time sort: an endpoint's
// deadlines are 1/w_i apart, so a bucket holds only deadlines of different
// endpoints, already in index order. Equal fractions round to equal floats
// (division is correctly rounded), so ties stay ties.
func edfTable(weights []uint64, period uint64) []uint32 {
	type deadline struct {
		at    float64
		index uint32
	}
	slot := func(at float64) uint64 { return min(uint64(at*float64(period)), period-1) }
	starts := make([]uint32, period+1)
	for _, w := range weights {
		for k := range w {
			starts[slot(float64(2*k+1)/float64(2*w))+1]++
		}
	}
	for i := uint64(1); i <= period; i++ {
		starts[i] += starts[i-1]
	}
	sorted := make([]deadline, period)
	fill := slices.Clone(starts[:period])
	for i, w := range weights {
		for k := range w {
			at := float64(2*k+1) / float64(2*w)
			b := slot(at)
			sorted[fill[b]] = deadline{at, uint32(i)}
			fill[b]++
		}
	}
	byDeadline := func(a, b deadline) int {
		if c := cmp.Compare(a.at, b.at); c != 0 {
			return c
		}
		return cmp.Compare(a.index, b.index)
	}
	for b := range period {
		if bucket := sorted[starts[b]:starts[b+1]]; len(bucket) > 1 {
			slices.SortStableFunc(bucket, byDeadline)
		}
	}
	table := make([]uint32, period)
	for i, d := range sorted {
		table[i] = d.index
	}
	return table
}

type weightedPicker struct {
	eps   []*Endpoint
	table []uint32
	live  *liveSchedule // only when the period is too long for a table
	_     cacheLinePad
	next  atomic.Uint64
}

// retryScanLimit bounds how far a retry walks the schedule looking for an
// untried endpoint before it settles for the first untried in list order.
const retryScanLimit = 64

func (p *weightedPicker) Pick(triedList []*Endpoint) *Endpoint {
	if p.live != nil {
		return p.live.pick(p.eps, triedList)
	}
	n := uint64(len(p.table))
	pos := (p.next.Add(1) - 1) % n
	e := p.eps[p.table[pos]]
	if len(triedList) == 0 || !tried(triedList, e) {
		return e
	}
	// Walking the schedule on from here keeps retries weight-proportional.
	for step := uint64(1); step < n && step <= retryScanLimit; step++ {
		if c := p.eps[p.table[(pos+step)%n]]; !tried(triedList, c) {
			return c
		}
	}
	return firstUntried(p.eps, int(p.table[pos]), triedList)
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// edf generates the earliest-deadline-first weighted schedule.
type edf struct {
	heap    []edfEntry
	period  uint64
	emitted uint64
}

type edfEntry struct {
	index  int
	weight uint64
	picks  uint64
}

func newEDF(weights []uint64) *edf {
	s := &edf{heap: make([]edfEntry, len(weights))}
	for i, w := range weights {
		s.heap[i] = edfEntry{index: i, weight: w}
		s.period += w
	}
	s.init()
	return s
}

// before compares deadlines (2k+1)/(2w) exactly in integers; ties go to the
// lower index so the schedule is deterministic.
func (a edfEntry) before(b edfEntry) bool {
	l, r := (2*a.picks+1)*b.weight, (2*b.picks+1)*a.weight
	return l < r || (l == r && a.index < b.index)
}

func (s *edf) init() {
	sort.Slice(s.heap, func(i, j int) bool { return s.heap[i].before(s.heap[j]) }) // a sorted slice is a heap
}

func (s *edf) next() int {
	top := &s.heap[0]
	idx := top.index
	top.picks++
	s.siftDown(0)
	s.emitted++
	if s.emitted == s.period { // the schedule is periodic: restart to keep counters small
		s.emitted = 0
		for i := range s.heap {
			s.heap[i].picks = 0
		}
		s.init()
	}
	return idx
}

func (s *edf) siftDown(i int) {
	h := s.heap
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h[r].before(h[l]) {
			m = r
		}
		if !h[m].before(h[i]) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}
