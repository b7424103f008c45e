// Package latency describes how long a server takes to answer: fixed,
// normal and lognormal models, parsed from strings such as
// "lognormal(10ms, 40ms)" and sampled without allocating. The simulator and
// the demo server share it, and so does the configuration that names them.
package latency

import (
	"bufio"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Kind names a latency distribution.
type Kind int

const (
	// Fixed always takes A.
	Fixed Kind = iota
	// Normal has mean A and standard deviation B, cut off at zero.
	Normal
	// LogNormal has median A and 99th percentile B: the long right tail of
	// real services, described by the two numbers operators know.
	LogNormal
	// Recorded draws from Samples, latencies recorded from a real service
	// (resampled: each draw is one of them at random).
	Recorded
	// Replayed takes Samples in order, starting over after the last: the
	// recording's slow spells come back as spells.
	Replayed
)

// Model is how long a simulated server takes to answer.
type Model struct {
	Kind Kind
	A, B time.Duration
	// Samples and Source are a Recorded or Replayed model's latencies and
	// where they were read from ("file" or "file, column").
	Samples []time.Duration
	Source  string
	// Scaled is the factor Scale applied to Samples (0: none).
	Scaled float64
	// next is where a Replayed model's Sample is in Samples, shared by
	// the model's copies (a demo server's handlers).
	next *atomic.Uint64
}

// z99 is the standard normal's 99th percentile.
const z99 = 2.3263478740408408

// Default is used for servers without a latency model of their own.
var Default = Model{Kind: LogNormal, A: 10 * time.Millisecond, B: 40 * time.Millisecond}

// Parse reads "20ms", "fixed(20ms)", "normal(20ms, 5ms)",
// "lognormal(20ms, 80ms)" (median, then 99th percentile), or
// "recorded(FILE)" and "recorded(FILE, COLUMN)": latencies recorded from a
// real service, read now (see ReadRecorded) and resampled, or
// "replay(FILE[, COLUMN])": the same taken in order.
func Parse(s string) (Model, error) {
	s = strings.TrimSpace(s)
	name, args, call := strings.Cut(s, "(")
	if fn := strings.TrimSpace(name); call && (fn == "recorded" || fn == "replay") {
		if !strings.HasSuffix(args, ")") {
			return Model{}, fmt.Errorf("latency %q: missing closing parenthesis", s)
		}
		file, column, _ := strings.Cut(strings.TrimSuffix(args, ")"), ",")
		file, column = strings.TrimSpace(file), strings.TrimSpace(column)
		if file == "" {
			return Model{}, fmt.Errorf("latency %q: %s takes a file, and for a CSV file a column: %s(latencies.csv, took)", s, fn, fn)
		}
		samples, err := ReadRecorded(file, column)
		if err != nil {
			return Model{}, fmt.Errorf("latency %q: %w", s, err)
		}
		source := file
		if column != "" {
			source += ", " + column
		}
		if fn == "replay" {
			return Model{Kind: Replayed, Samples: samples, Source: source, next: new(atomic.Uint64)}, nil
		}
		return Model{Kind: Recorded, Samples: samples, Source: source}, nil
	}
	if !call {
		d, err := parsePositiveDuration(s)
		if err != nil {
			return Model{}, fmt.Errorf("latency %q: %w (want a duration like 20ms, or normal(20ms, 5ms), or lognormal(20ms, 80ms))", s, err)
		}
		return Model{Kind: Fixed, A: d}, nil
	}
	if !strings.HasSuffix(args, ")") {
		return Model{}, fmt.Errorf("latency %q: missing closing parenthesis", s)
	}
	parts := strings.Split(strings.TrimSuffix(args, ")"), ",")
	durs := make([]time.Duration, len(parts))
	for i, p := range parts {
		d, err := parsePositiveDuration(strings.TrimSpace(p))
		if err != nil {
			return Model{}, fmt.Errorf("latency %q: argument %d: %w", s, i+1, err)
		}
		durs[i] = d
	}
	want := func(n int, form string) error {
		if len(durs) != n {
			return fmt.Errorf("latency %q: %s takes %d arguments: %s", s, name, n, form)
		}
		return nil
	}
	switch strings.TrimSpace(name) {
	case "fixed":
		if err := want(1, "fixed(duration)"); err != nil {
			return Model{}, err
		}
		return Model{Kind: Fixed, A: durs[0]}, nil
	case "normal":
		if err := want(2, "normal(mean, stddev)"); err != nil {
			return Model{}, err
		}
		return Model{Kind: Normal, A: durs[0], B: durs[1]}, nil
	case "lognormal":
		if err := want(2, "lognormal(median, p99)"); err != nil {
			return Model{}, err
		}
		if durs[1] <= durs[0] {
			return Model{}, fmt.Errorf("latency %q: the 99th percentile (%s) must exceed the median (%s)", s, durs[1], durs[0])
		}
		return Model{Kind: LogNormal, A: durs[0], B: durs[1]}, nil
	}
	return Model{}, fmt.Errorf("latency %q: unknown distribution %q (want fixed, normal, lognormal, recorded or replay)", s, name)
}

func parsePositiveDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q must be positive", s)
	}
	return d, nil
}

// Scale returns the model f times as slow: every latency it draws,
// multiplied by f.
func (m Model) Scale(f float64) Model {
	scale := func(d time.Duration) time.Duration { return time.Duration(float64(d) * f) }
	out := Model{Kind: m.Kind, A: scale(m.A), B: scale(m.B), Source: m.Source}
	if m.Kind == Recorded || m.Kind == Replayed {
		out.next = new(atomic.Uint64)
		out.Samples = make([]time.Duration, len(m.Samples))
		for i, d := range m.Samples {
			out.Samples[i] = scale(d)
		}
		out.Scaled = f * max(m.Scaled, 1)
	}
	return out
}

// Mean is the model's mean latency (a normal model's clamping at zero
// aside).
func (m Model) Mean() time.Duration {
	switch m.Kind {
	case Recorded, Replayed:
		var sum float64
		for _, d := range m.Samples {
			sum += float64(d)
		}
		return time.Duration(sum / float64(len(m.Samples)))
	case LogNormal:
		sigma := math.Log(float64(m.B)/float64(m.A)) / z99
		return time.Duration(float64(m.A) * math.Exp(sigma*sigma/2))
	}
	return m.A
}

func (m Model) String() string {
	switch m.Kind {
	case Normal:
		return fmt.Sprintf("normal(%s, %s)", m.A, m.B)
	case LogNormal:
		return fmt.Sprintf("lognormal(%s, %s)", m.A, m.B)
	case Recorded, Replayed:
		fn := "recorded"
		if m.Kind == Replayed {
			fn = "replay"
		}
		if m.Scaled != 0 {
			return fmt.Sprintf("%s(%s) × %g", fn, m.Source, m.Scaled)
		}
		return fmt.Sprintf("%s(%s)", fn, m.Source)
	}
	return m.A.String()
}

// Sampler draws latencies in nanoseconds with precomputed parameters.
type Sampler struct {
	kind    Kind
	a       float64
	sigma   float64
	samples []time.Duration
	next    *atomic.Uint64
}

// Sampler returns a sampler for the model; a Replayed model's starts at
// the first sample.
func (m Model) Sampler() Sampler {
	s := Sampler{kind: m.Kind, a: float64(m.A), samples: m.Samples}
	if m.Kind == Replayed {
		s.next = new(atomic.Uint64)
	}
	switch m.Kind {
	case Normal:
		s.sigma = float64(m.B)
	case LogNormal:
		s.sigma = math.Log(float64(m.B)/float64(m.A)) / z99
	}
	return s
}

// Sample draws one latency in nanoseconds.
func (s Sampler) Sample(r *rand.Rand) int64 {
	switch s.kind {
	case Normal:
		return int64(max(0, s.a+s.sigma*r.NormFloat64()))
	case LogNormal:
		return int64(s.a * math.Exp(s.sigma*r.NormFloat64()))
	case Recorded:
		return int64(s.samples[r.IntN(len(s.samples))])
	case Replayed:
		return int64(s.samples[(s.next.Add(1)-1)%uint64(len(s.samples))])
	}
	return int64(s.a)
}

// Sample draws one latency from the model; a Replayed model's copies
// share their place in the samples.
func (m Model) Sample(r *rand.Rand) time.Duration {
	sampler := m.Sampler()
	if m.next != nil {
		sampler.next = m.next
	}
	return time.Duration(sampler.Sample(r))
}

// MaxRecorded bounds the samples ReadRecorded keeps.
const MaxRecorded = 10_000_000

// ReadRecorded reads recorded latencies: one per line (a duration such as
// "12.5ms", or a bare number of milliseconds), blank lines and lines
// starting with # skipped. With a column, the file is CSV whose first line
// names the columns, and the column's values are read.
func ReadRecorded(path, column string) ([]time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	col := -1
	var out []time.Duration
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		value := line
		if column != "" {
			fields := strings.Split(line, ",")
			if col < 0 {
				for i, f := range fields {
					if strings.TrimSpace(strings.Trim(f, `"`)) == column {
						col = i
					}
				}
				if col < 0 {
					return nil, fmt.Errorf("%s:%d: no column %q in the header (%s)", path, n, column, line)
				}
				continue
			}
			if col >= len(fields) {
				return nil, fmt.Errorf("%s:%d: the line has no column %q", path, n, column)
			}
			value = strings.TrimSpace(strings.Trim(fields[col], `"`))
		}
		d, err := recordedValue(value)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		if len(out) == MaxRecorded {
			return nil, fmt.Errorf("%s: more than %d latencies; keep a sample of them", path, MaxRecorded)
		}
		out = append(out, d)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no latency", path)
	}
	return out, nil
}

// recordedValue reads "12.5ms", or "12.5" as milliseconds.
func recordedValue(s string) (time.Duration, error) {
	if ms, err := strconv.ParseFloat(s, 64); err == nil {
		if !(ms >= 0) || ms > float64(time.Hour/time.Millisecond) {
			return 0, fmt.Errorf("%q is not a latency in milliseconds", s)
		}
		return time.Duration(ms * float64(time.Millisecond)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration (like 12.5ms) or a number of milliseconds", s)
	}
	return d, nil
}
