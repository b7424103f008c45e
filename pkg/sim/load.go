package sim

import (
	"math"
	"math/rand/v2"
	"time"
)

// load is an open loop's offered rate over time: linear between its
// points and constant after the last; two points at one time make a step.
type load struct {
	points []ratePoint
	piece  int // where the last arrival was: points[piece].t <= it
}

type ratePoint struct {
	t   int64 // nanoseconds from the start
	rps float64
}

func newLoad(rps float64, changes []RateChange) *load {
	pts := []ratePoint{{0, rps}}
	for _, c := range changes {
		at := int64(c.At)
		now := rateAt(pts, at)
		// A change cuts short a ramp still under way: the rate goes on
		// from where that ramp had reached.
		for len(pts) > 1 && pts[len(pts)-1].t > at {
			pts = pts[:len(pts)-1]
		}
		pts = append(pts, ratePoint{at, now}, ratePoint{at + int64(c.Ramp), c.RPS})
	}
	return &load{points: pts}
}

// rateAt is the rate at t: on the line between the points around it.
func rateAt(pts []ratePoint, t int64) float64 {
	for i := len(pts) - 1; i >= 0; i-- {
		p := pts[i]
		if p.t > t {
			continue
		}
		if i+1 == len(pts) {
			return p.rps
		}
		return interpolate(p, pts[i+1], t)
	}
	return pts[0].rps
}

func interpolate(p, q ratePoint, t int64) float64 {
	if q.t == p.t {
		return q.rps
	}
	return p.rps + (q.rps-p.rps)*float64(t-p.t)/float64(q.t-p.t)
}

// next returns the time of the arrival after t, a Poisson process whose
// rate follows the points: exponential gaps at the piece's highest rate,
// each kept with the chance its time's rate bears to that (thinning), and
// a fresh start at each point, which the process's lack of memory allows.
// Where the rate is constant every gap is kept, so a run without changes
// draws one number per arrival.
func (l *load) next(t int64, rng *rand.Rand) int64 {
	for {
		for l.piece+1 < len(l.points) && l.points[l.piece+1].t <= t {
			l.piece++
		}
		p := l.points[l.piece]
		if l.piece+1 == len(l.points) {
			return t + int64(rng.ExpFloat64()/p.rps*float64(time.Second))
		}
		q := l.points[l.piece+1]
		from := interpolate(p, q, t)
		bound := max(from, q.rps)
		at := t + int64(rng.ExpFloat64()/bound*float64(time.Second))
		if at >= q.t {
			t = q.t
			continue
		}
		if from == q.rps || rng.Float64()*bound < interpolate(p, q, at) {
			return at
		}
		t = at
	}
}

// expected is how many requests the load sends in its first d.
func (l *load) expected(d time.Duration) float64 {
	end := int64(d)
	var n float64
	for i, p := range l.points {
		if p.t >= end {
			break
		}
		if i+1 == len(l.points) {
			n += p.rps * float64(end-p.t) / float64(time.Second)
			break
		}
		q := l.points[i+1]
		until := min(q.t, end)
		mean := (p.rps + interpolate(p, q, until)) / 2
		n += mean * float64(until-p.t) / float64(time.Second)
	}
	return n
}

// peak is the highest rate the load reaches.
func (l *load) peak() float64 {
	top := 0.0
	for _, p := range l.points {
		top = math.Max(top, p.rps)
	}
	return top
}

// requestsOver is how many requests an open loop at rps, changed by
// changes, sends over d (at least one).
func requestsOver(rps float64, changes []RateChange, d time.Duration) int {
	return max(1, int(math.Round(newLoad(rps, changes).expected(d))))
}

// PeakRPS is the highest rate an open-loop run offers, its rate changes
// included; zero for a closed loop.
func (c *Config) PeakRPS() float64 {
	if c.RPS <= 0 {
		return 0
	}
	return newLoad(c.RPS, c.RateChanges).peak()
}

// expectedLength is about how long an open-loop run takes to send its
// requests, by the load's rates; zero for a closed loop, which depends on
// the servers.
func (s *simulation) expectedLength() time.Duration {
	if s.cfg.RPS <= 0 {
		return 0
	}
	want := float64(s.cfg.Requests)
	var d time.Duration = time.Second
	for s.load.expected(d) < want && d < 1<<50 {
		d *= 2
	}
	return d / 2
}
