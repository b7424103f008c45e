// Package simreport writes simulation reports as one self-contained HTML
// page: tables and SVG charts (requests per server over time, latency
// percentiles over time, the latency CDF of each strategy, the scenario's
// events on the time axis), with no scripts and nothing fetched, so that it
// opens anywhere and can be mailed or attached to a review.
package simreport

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/peervault/pvlb/pkg/sim"
)

// Page is what one report shows: runs of the same traffic, one per
// strategy compared (or one).
type Page struct {
	// Command is how the runs were made, to make them again.
	Command string
	Runs    []*sim.Report
}

// palette colours series; it is told apart by people with the common
// colour-vision deficiencies (Okabe and Ito's palette, then greys).
var palette = []string{"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000", "#999999", "#666666", "#BBBBBB"}

func colour(i int) string { return palette[i%len(palette)] }

// maxStacked bounds the servers drawn apart in a stacked chart; the rest
// are summed into one layer.
const maxStacked = 10

// maxEventRows bounds the events listed per run.
const maxEventRows = 200

// Write writes the page.
func Write(w io.Writer, p Page) error {
	if len(p.Runs) == 0 {
		return fmt.Errorf("simreport: no runs to report")
	}
	first := p.Runs[0]
	d := pageData{Command: p.Command, First: first, Compare: len(p.Runs) > 1, Mode: first.Traffic()}
	d.Title = fmt.Sprintf("pvlb simulate: service %q", first.Service)
	d.Clock = timeAxis(first)
	if first.Measured {
		d.Title = fmt.Sprintf("pvlb load: service %q", first.Service)
	}
	if first.Scenario != "" {
		d.Title += fmt.Sprintf(", scenario %q", first.Scenario)
	}
	for i, r := range p.Runs {
		d.Runs = append(d.Runs, summarise(i, r, first))
		_, cached := r.CacheHitRate()
		d.Cached = d.Cached || cached
	}
	end := 0.0
	for _, r := range p.Runs {
		end = math.Max(end, float64(r.SimulatedTime)/float64(time.Second))
	}
	d.Marks = marks(scenarioEvents(first))
	events := d.Marks
	if d.Compare {
		d.TailChart = template.HTML(tailOverTime(p.Runs, end, events))
		d.CDFChart = template.HTML(cdf(p.Runs))
	}
	for i, r := range p.Runs {
		d.Runs[i].LoadChart = template.HTML(stacked(fmt.Sprintf("load-%d", i), r, end, events))
		d.Runs[i].LatencyChart = template.HTML(percentilesOverTime(fmt.Sprintf("latency-%d", i), r, end, events))
	}
	if !d.Compare {
		d.CDFChart = template.HTML(cdf(p.Runs))
	}
	return page.Execute(w, d)
}

type pageData struct {
	Title, Command, Mode string
	// Clock names the time axis: simulated time, or a measured run's.
	Clock   string
	First   *sim.Report
	Compare bool
	// Cached is set when some run's servers cache keys: the comparison
	// then shows each run's cache hits.
	Cached              bool
	Runs                []runData
	TailChart, CDFChart template.HTML
	Marks               []mark
}

type runData struct {
	Name                    string
	Colour                  string
	R                       *sim.Report
	FailedPct               string
	Busiest, Quietest       string
	P99Ratio, P999Ratio     string
	CacheHits               string // the share of keyed attempts that found their key cached; "–" without caches
	LoadChart, LatencyChart template.HTML
	Events                  []sim.Event
	MoreEvents              int
}

func summarise(i int, r, first *sim.Report) runData {
	d := runData{Name: r.Label(), Colour: colour(i), R: r}
	if r.Requests > 0 {
		d.FailedPct = pct(float64(r.Failed) / float64(r.Requests))
	}
	busiest, quietest := 0.0, 1.0
	for _, s := range r.Servers {
		busiest, quietest = math.Max(busiest, s.Share), math.Min(quietest, s.Share)
	}
	d.Busiest, d.Quietest = pct(busiest), pct(quietest)
	d.P99Ratio, d.P999Ratio = ratio(r.Latency.P99, first.Latency.P99), ratio(r.Latency.P999, first.Latency.P999)
	d.CacheHits = "–"
	if rate, ok := r.CacheHitRate(); ok {
		d.CacheHits = pct(rate)
	}
	d.Events = r.Events
	if len(d.Events) > maxEventRows {
		d.Events, d.MoreEvents = d.Events[:maxEventRows], len(d.Events)-maxEventRows
	}
	return d
}

func pct(f float64) string { return strconv.FormatFloat(f*100, 'f', 1, 64) + "%" }

func ratio(a, b sim.Millis) string {
	if b == 0 {
		return "–"
	}
	return sim.FormatRatio(float64(a) / float64(b))
}

func ms(m sim.Millis) string {
	d := time.Duration(m)
	switch {
	case d >= time.Second:
		return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + " s"
	case d >= 10*time.Millisecond:
		return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) + " ms"
}

// scenarioEvents are the events the scenario (or the flags) made happen,
// which every strategy's run shares: they mark the time axes.
func scenarioEvents(r *sim.Report) []sim.Event {
	var out []sim.Event
	for _, e := range r.Events {
		if e.Source == sim.FromScenario {
			out = append(out, e)
		}
	}
	return out
}

// mark is one instant of the scenario on the time axes, with everything
// that happened then.
type mark struct {
	N    int
	At   time.Duration
	Text string
}

// marks groups the scenario's events by instant, numbered in time order.
func marks(events []sim.Event) []mark {
	var out []mark
	for _, e := range events {
		text := e.Server + ": " + e.What
		if e.Server == "(all)" {
			text = e.What
		}
		if n := len(out); n > 0 && out[n-1].At == e.At {
			out[n-1].Text += "; " + text
			continue
		}
		out = append(out, mark{N: len(out) + 1, At: e.At, Text: text})
	}
	return out
}

// markEvents draws the marks on a time chart.
func markEvents(c *chart, marks []mark) {
	for _, m := range marks {
		c.marker(m.At.Seconds(), strconv.Itoa(m.N), fmt.Sprintf("%s: %s", seconds(m.At.Seconds()), m.Text))
	}
}

func seconds(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) + " s" }

func plain(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// stepTimes returns the middle of each step of a timeline, in seconds.
func stepTimes(t sim.Timeline, n int) []float64 {
	step := time.Duration(t.Step).Seconds()
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = (float64(i) + 0.5) * step
	}
	return xs
}

// stacked draws requests per second per server over time, each server a
// layer on the ones before, the busiest maxStacked apart and the rest as
// one layer.
func stacked(id string, r *sim.Report, end float64, events []mark) string {
	n := len(r.Timeline.Succeeded)
	xs := stepTimes(r.Timeline, n)
	perSecond := 1 / time.Duration(r.Timeline.Step).Seconds()
	order := make([]int, len(r.Servers))
	for i := range order {
		order[i] = i
	}
	if len(order) > maxStacked {
		slices.SortStableFunc(order, func(a, b int) int { return r.Servers[b].Requests - r.Servers[a].Requests })
	}
	type layer struct {
		name   string
		counts []int
	}
	var layers []layer
	for k, idx := range order {
		if k == maxStacked {
			rest := make([]int, n)
			for _, other := range order[k:] {
				for i, v := range r.Servers[other].Timeline {
					rest[i] += v
				}
			}
			layers = append(layers, layer{fmt.Sprintf("%d other servers", len(order)-k), rest})
			break
		}
		layers = append(layers, layer{r.Servers[idx].ID, r.Servers[idx].Timeline})
	}
	lower := make([]float64, n)
	top := 0.0
	var bands [][]float64
	for _, l := range layers {
		upper := make([]float64, n)
		for i := range upper {
			v := 0.0
			if i < len(l.counts) {
				v = float64(l.counts[i])
			}
			upper[i] = lower[i] + v*perSecond
			top = math.Max(top, upper[i])
		}
		bands = append(bands, upper)
		lower = upper
	}
	ymax := niceMax(top)
	c := newChart(id, 0, end, 0, ymax, false, false)
	c.axes(timeAxis(r), "attempts per second", ticks(0, end, 8), ticks(0, ymax, 5), seconds, plain)
	zero := make([]float64, n)
	for i, l := range layers {
		below := zero
		if i > 0 {
			below = bands[i-1]
		}
		c.band(l.name, colour(i), xs, below, bands[i])
	}
	markEvents(c, events)
	return c.svg()
}

// percentilesOverTime draws one run's p50, p90 and p99 per step.
func percentilesOverTime(id string, r *sim.Report, end float64, events []mark) string {
	t := r.Timeline
	xs := stepTimes(t, len(t.Succeeded))
	c := latencyChart(id, "latency", timeAxis(r), end, t.P50, t.P90, t.P99)
	for i, s := range [][]sim.Millis{t.P50, t.P90, t.P99} {
		c.line([]string{"p50", "p90", "p99"}[i], colour(i), xs, values(s), false)
	}
	markEvents(c, events)
	return c.svg()
}

// tailOverTime draws each strategy's p99 per step in one chart.
func tailOverTime(runs []*sim.Report, end float64, events []mark) string {
	var all [][]sim.Millis
	for _, r := range runs {
		all = append(all, r.Timeline.P99)
	}
	c := latencyChart("p99-by-strategy", "p99 latency", timeAxis(runs[0]), end, all...)
	for i, r := range runs {
		c.line(r.Label(), colour(i), stepTimes(r.Timeline, len(r.Timeline.P99)), values(r.Timeline.P99), false)
	}
	markEvents(c, events)
	return c.svg()
}

// latencyChart makes a chart of latencies over time that fits the
// series: a linear axis, or a log one when they span more than a decade
// and a half, so that a strategy whose tail is a hundred times another's
// does not flatten the other into the axis.
func latencyChart(id, what, clock string, end float64, series ...[]sim.Millis) *chart {
	lo, hi := math.Inf(1), 0.0
	for _, s := range series {
		for _, v := range s {
			if v > 0 {
				lo, hi = math.Min(lo, msOf(v)), math.Max(hi, msOf(v))
			}
		}
	}
	if hi > 0 && hi/lo > 30 {
		lo, hi = decades(lo, hi)
		c := newChart(id, 0, end, lo, hi, false, true)
		c.axes(clock, what+" (log scale)", ticks(0, end, 8), logTicks(lo, hi), seconds, duration)
		return c
	}
	ymax := niceMax(hi)
	c := newChart(id, 0, end, 0, ymax, false, false)
	c.axes(clock, what+" (ms)", ticks(0, end, 8), ticks(0, ymax, 5), seconds, plain)
	return c
}

// duration labels a tick in milliseconds as a duration.
func duration(ms float64) string {
	if ms >= 1000 {
		return plain(ms/1000) + " s"
	}
	return plain(ms) + " ms"
}

// cdf draws each run's latency distribution: the share of requests done
// within a latency, on a log latency axis.
func cdf(runs []*sim.Report) string {
	lo, hi := math.Inf(1), 0.0
	for _, r := range runs {
		for _, p := range r.LatencyCDF {
			if v := msOf(p.Latency); v > 0 {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if math.IsInf(lo, 1) {
		lo, hi = 1, 10
	}
	lo, hi = decades(lo, hi)
	c := newChart("latency-cdf", lo, hi, 0, 1, true, false)
	c.axes("latency (log scale)", "share of requests done", logTicks(lo, hi), ticks(0, 1, 5), duration, pct)
	for i, r := range runs {
		xs, ys := make([]float64, 0, len(r.LatencyCDF)), make([]float64, 0, len(r.LatencyCDF))
		for _, p := range r.LatencyCDF {
			if v := msOf(p.Latency); v > 0 {
				xs, ys = append(xs, v), append(ys, p.Quantile)
			}
		}
		c.line(r.Label(), colour(i), xs, ys, false)
	}
	return c.svg()
}

func msOf(m sim.Millis) float64 { return float64(m) / float64(time.Millisecond) }

// values turns a series into chart values, a step with no answers (zero)
// into a gap.
func values(v []sim.Millis) []float64 {
	out := make([]float64, len(v))
	for i, m := range v {
		out[i] = msOf(m)
		if m == 0 {
			out[i] = math.NaN()
		}
	}
	return out
}

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"ms": ms, "pct": pct, "at": func(d time.Duration) string { return seconds(d.Seconds()) },
}).Parse(pageTemplate))

// timeAxis names a run's time axis: simulated time, or a measured run's.
func timeAxis(r *sim.Report) string {
	if r.Measured {
		return "time"
	}
	return "simulated time"
}
