package simreport

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
)

// chart draws one SVG chart: a plot area with axes, in data coordinates
// that map to pixels linearly (or, for a log x axis, logarithmically).
type chart struct {
	b          strings.Builder
	id         string
	w, h       float64
	left, top  float64
	plotW      float64
	plotH      float64
	x0, x1     float64
	y0, y1     float64
	xlog, ylog bool
	legend     []legendItem
}

type legendItem struct{ name, color string }

const (
	chartW      = 880
	chartH      = 280
	marginLeft  = 64
	marginRight = 170 // the legend
	marginTop   = 14
	marginBot   = 42
)

func newChart(id string, x0, x1, y0, y1 float64, xlog, ylog bool) *chart {
	if !(x1 > x0) {
		x1 = x0 + 1
	}
	if !(y1 > y0) {
		y1 = y0 + 1
	}
	return &chart{id: id, w: chartW, h: chartH, left: marginLeft, top: marginTop,
		plotW: chartW - marginLeft - marginRight, plotH: chartH - marginTop - marginBot,
		x0: x0, x1: x1, y0: y0, y1: y1, xlog: xlog, ylog: ylog}
}

func (c *chart) px(x float64) float64 {
	f := (x - c.x0) / (c.x1 - c.x0)
	if c.xlog {
		f = (math.Log(x) - math.Log(c.x0)) / (math.Log(c.x1) - math.Log(c.x0))
	}
	return c.left + math.Max(0, math.Min(1, f))*c.plotW
}

func (c *chart) py(y float64) float64 {
	f := (y - c.y0) / (c.y1 - c.y0)
	if c.ylog {
		f = (math.Log(y) - math.Log(c.y0)) / (math.Log(c.y1) - math.Log(c.y0))
	}
	return c.top + c.plotH - math.Max(0, math.Min(1, f))*c.plotH
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

// axes draws the frame, grid lines at the ticks and the axis labels.
func (c *chart) axes(xlabel, ylabel string, xticks, yticks []float64, xfmt, yfmt func(float64) string) {
	fmt.Fprintf(&c.b, `<g class="axes">`)
	for _, t := range yticks {
		y := c.py(t)
		fmt.Fprintf(&c.b, `<line class="grid" x1="%s" y1="%s" x2="%s" y2="%s"/><text class="tick" x="%s" y="%s" text-anchor="end">%s</text>`,
			num(c.left), num(y), num(c.left+c.plotW), num(y), num(c.left-6), num(y+4), html.EscapeString(yfmt(t)))
	}
	for _, t := range xticks {
		x := c.px(t)
		fmt.Fprintf(&c.b, `<line class="grid" x1="%s" y1="%s" x2="%s" y2="%s"/><text class="tick" x="%s" y="%s" text-anchor="middle">%s</text>`,
			num(x), num(c.top), num(x), num(c.top+c.plotH), num(x), num(c.top+c.plotH+16), html.EscapeString(xfmt(t)))
	}
	fmt.Fprintf(&c.b, `<rect class="frame" x="%s" y="%s" width="%s" height="%s"/>`, num(c.left), num(c.top), num(c.plotW), num(c.plotH))
	fmt.Fprintf(&c.b, `<text class="label" x="%s" y="%s" text-anchor="middle">%s</text>`, num(c.left+c.plotW/2), num(c.h-6), html.EscapeString(xlabel))
	fmt.Fprintf(&c.b, `<text class="label" transform="translate(14 %s) rotate(-90)" text-anchor="middle">%s</text>`, num(c.top+c.plotH/2), html.EscapeString(ylabel))
	c.b.WriteString(`</g>`)
}

// line draws a series as a polyline, broken where a point is missing
// (NaN).
func (c *chart) line(name, color string, xs, ys []float64, dashed bool) {
	class := "line"
	if dashed {
		class += " dashed"
	}
	fmt.Fprintf(&c.b, `<g class="series" data-series="%s"><title>%s</title>`, html.EscapeString(name), html.EscapeString(name))
	var pts []string
	flush := func() {
		if len(pts) > 0 {
			fmt.Fprintf(&c.b, `<polyline class="%s" stroke="%s" points="%s"/>`, class, color, strings.Join(pts, " "))
		}
		pts = pts[:0]
	}
	for i := range xs {
		if math.IsNaN(ys[i]) {
			flush()
			continue
		}
		pts = append(pts, num(c.px(xs[i]))+","+num(c.py(ys[i])))
	}
	flush()
	c.b.WriteString(`</g>`)
	c.legend = append(c.legend, legendItem{name, color})
}

// band draws the area between two series, lower and upper, as the layers
// of a stacked chart are drawn.
func (c *chart) band(name, color string, xs, lower, upper []float64) {
	fmt.Fprintf(&c.b, `<g class="series" data-series="%s"><title>%s</title><polygon class="area" fill="%s" points="`, html.EscapeString(name), html.EscapeString(name), color)
	for i := range xs {
		fmt.Fprintf(&c.b, "%s,%s ", num(c.px(xs[i])), num(c.py(upper[i])))
	}
	for i := len(xs) - 1; i >= 0; i-- {
		fmt.Fprintf(&c.b, "%s,%s ", num(c.px(xs[i])), num(c.py(lower[i])))
	}
	c.b.WriteString(`"/></g>`)
	c.legend = append(c.legend, legendItem{name, color})
}

// marker draws an event as a dashed vertical line with its text as a
// tooltip and a short label above the plot.
func (c *chart) marker(x float64, label, text string) {
	px := c.px(x)
	fmt.Fprintf(&c.b, `<g class="event"><title>%s</title><line x1="%s" y1="%s" x2="%s" y2="%s"/><text x="%s" y="%s" text-anchor="middle">%s</text></g>`,
		html.EscapeString(text), num(px), num(c.top), num(px), num(c.top+c.plotH), num(px), num(c.top+10), html.EscapeString(label))
}

// svg returns the chart with its legend, newest layer on top in the
// legend as on the chart.
func (c *chart) svg() string {
	var out strings.Builder
	fmt.Fprintf(&out, `<svg id="%s" class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %s %s" role="img">`, c.id, num(c.w), num(c.h))
	out.WriteString(c.b.String())
	x := c.left + c.plotW + 14
	for i := range c.legend {
		item := c.legend[len(c.legend)-1-i]
		y := c.top + 8 + float64(i)*18
		if y > c.top+c.plotH {
			break
		}
		fmt.Fprintf(&out, `<g class="legend"><rect x="%s" y="%s" width="12" height="12" fill="%s"/><text x="%s" y="%s">%s</text></g>`,
			num(x), num(y-10), item.color, num(x+18), num(y), html.EscapeString(shorten(item.name, 22)))
	}
	out.WriteString(`</svg>`)
	return out.String()
}

func shorten(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// ticks returns about n round values (1, 2 or 5 times a power of ten)
// from lo to hi.
func ticks(lo, hi float64, n int) []float64 {
	if !(hi > lo) {
		return []float64{lo}
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var out []float64
	for t := math.Ceil(lo/step) * step; t <= hi+step*1e-9; t += step {
		out = append(out, t)
	}
	return out
}

// logTicks returns the 1, 2, 5 steps of each decade from lo to hi, or
// only the powers of ten over more than three decades.
func logTicks(lo, hi float64) []float64 {
	steps := []float64{1, 2, 5}
	if hi/lo > 1000 {
		steps = []float64{1}
	}
	var out []float64
	for mag := math.Pow(10, math.Floor(math.Log10(lo))); mag <= hi; mag *= 10 {
		for _, m := range steps {
			if t := m * mag; t >= lo && t <= hi {
				out = append(out, t)
			}
		}
	}
	return out
}

// decades widens [lo, hi] to whole powers of ten.
func decades(lo, hi float64) (float64, float64) {
	return math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
}

// niceMax rounds a chart's top up to its next tick.
func niceMax(v float64) float64 {
	if !(v > 0) {
		return 1
	}
	t := ticks(0, v, 5)
	step := t[1] - t[0]
	return math.Ceil(v/step) * step
}
