package sim

import "time"

// MinTimelineStep and MaxTimelinePoints shape a run's time series when
// Config.TimelineStep does not fix its step: it starts at the minimum and
// doubles whenever the series would pass the maximum.
const (
	MinTimelineStep   = 10 * time.Millisecond
	MaxTimelinePoints = 200
)

// timeline holds a run's series per step of simulated time: attempts per
// server, requests that ended well or badly, and the latency of those
// that succeeded.
type timeline struct {
	step  int64
	fixed bool
	// cur is the point holding the last time seen, which ends at curEnd:
	// simulated time only moves on, so most calls need no division.
	cur       int
	curEnd    int64
	attempts  [][]int // by server, then step
	succeeded []int
	failed    []int
	latency   []histogram
}

// newTimeline starts a run's series; expected, when known, is how long
// the run should take, so that the step starts near what it will be.
func newTimeline(step time.Duration, servers int, expected time.Duration) *timeline {
	t := &timeline{step: int64(step), fixed: step > 0, attempts: make([][]int, servers)}
	if !t.fixed {
		t.step = int64(MinTimelineStep)
		for t.step*MaxTimelinePoints < int64(expected) {
			t.step *= 2
		}
	}
	t.point(0)
	return t
}

// point returns the index of the step holding now, growing the series
// (and, unless fixed, coarsening it) to hold it.
func (t *timeline) point(now int64) int {
	if now < t.curEnd && now >= t.curEnd-t.step {
		return t.cur
	}
	b := int(now / t.step)
	for !t.fixed && b >= MaxTimelinePoints {
		t.coarsen()
		b = int(now / t.step)
	}
	for len(t.succeeded) <= b {
		t.succeeded = append(t.succeeded, 0)
		t.failed = append(t.failed, 0)
		t.latency = append(t.latency, histogram{})
	}
	t.cur, t.curEnd = b, int64(b+1)*t.step
	return b
}

// coarsen doubles the step, merging each pair of points.
func (t *timeline) coarsen() {
	t.step *= 2
	for i := range t.attempts {
		t.attempts[i] = mergePairs(t.attempts[i])
	}
	t.succeeded, t.failed = mergePairs(t.succeeded), mergePairs(t.failed)
	for i := range (len(t.latency) + 1) / 2 {
		h := t.latency[2*i]
		if 2*i+1 < len(t.latency) {
			h.merge(&t.latency[2*i+1])
		}
		t.latency[i] = h
	}
	clear(t.latency[(len(t.latency)+1)/2:])
	t.latency = t.latency[:(len(t.latency)+1)/2]
}

func mergePairs(s []int) []int {
	for i := range (len(s) + 1) / 2 {
		v := s[2*i]
		if 2*i+1 < len(s) {
			v += s[2*i+1]
		}
		s[i] = v
	}
	return s[:(len(s)+1)/2]
}

func (t *timeline) attempt(now int64, server int32) {
	b := t.point(now)
	a := t.attempts[server]
	for len(a) <= b {
		a = append(a, 0)
	}
	a[b]++
	t.attempts[server] = a
}

func (t *timeline) finish(now int64, ok bool, took int64) {
	b := t.point(now)
	if !ok {
		t.failed[b]++
		return
	}
	t.succeeded[b]++
	if t.latency[b].counts == nil {
		t.latency[b] = newHistogramOf(histSeriesSubBits)
	}
	t.latency[b].record(took)
}

// Timeline is a run's time series: one value per Step of simulated time,
// the first covering [0, Step).
type Timeline struct {
	Step Millis `json:"step_ms"`
	// Succeeded and Failed count the requests that ended in each step.
	Succeeded []int `json:"succeeded"`
	Failed    []int `json:"failed"`
	// P50, P90 and P99 are the latency percentiles of the requests that
	// succeeded in each step (zero where none did).
	P50 []Millis `json:"p50_ms"`
	P90 []Millis `json:"p90_ms"`
	P99 []Millis `json:"p99_ms"`
}

// series returns the timeline as reported, every series as long as the
// run, and each server's attempts (ServerReport.Timeline).
func (t *timeline) series(end int64) (Timeline, [][]int) {
	if end > 0 {
		t.point(end - 1) // the series reach the run's end
	}
	// Taken after point, which may have coarsened the series.
	n := len(t.succeeded)
	for i := range t.attempts {
		t.attempts[i] = append(t.attempts[i], make([]int, n-len(t.attempts[i]))...)
	}
	out := Timeline{Step: Millis(t.step), Succeeded: t.succeeded[:n], Failed: t.failed[:n],
		P50: make([]Millis, n), P90: make([]Millis, n), P99: make([]Millis, n)}
	for i := range n {
		if h := &t.latency[i]; h.total > 0 {
			out.P50[i], out.P90[i], out.P99[i] = Millis(h.quantile(0.5)), Millis(h.quantile(0.9)), Millis(h.quantile(0.99))
		}
	}
	return out, t.attempts
}
