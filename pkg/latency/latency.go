// Package latency describes how long a server takes to answer: fixed,
// normal and lognormal models, parsed from strings such as
// "lognormal(10ms, 40ms)" and sampled without allocating. The simulator and
// the demo server share it, and so does the configuration that names them.
package latency

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
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
)

// Model is how long a simulated server takes to answer.
type Model struct {
	Kind Kind
	A, B time.Duration
}

// z99 is the standard normal's 99th percentile.
const z99 = 2.3263478740408408

// Default is used for servers without a latency model of their own.
var Default = Model{Kind: LogNormal, A: 10 * time.Millisecond, B: 40 * time.Millisecond}

// Parse reads "20ms", "fixed(20ms)", "normal(20ms, 5ms)" or
// "lognormal(20ms, 80ms)" (median, then 99th percentile).
func Parse(s string) (Model, error) {
	s = strings.TrimSpace(s)
	name, args, call := strings.Cut(s, "(")
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
	return Model{}, fmt.Errorf("latency %q: unknown distribution %q (want fixed, normal or lognormal)", s, name)
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

// Mean is the model's mean latency (a normal model's clamping at zero
// aside).
func (m Model) Mean() time.Duration {
	switch m.Kind {
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
	}
	return m.A.String()
}

// Sampler draws latencies in nanoseconds with precomputed parameters.
type Sampler struct {
	kind  Kind
	a     float64
	sigma float64
}

// Sampler returns a sampler for the model.
func (m Model) Sampler() Sampler {
	s := Sampler{kind: m.Kind, a: float64(m.A)}
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
	}
	return int64(s.a)
}

// Sample draws one latency from the model.
func (m Model) Sample(r *rand.Rand) time.Duration {
	return time.Duration(m.Sampler().Sample(r))
}
