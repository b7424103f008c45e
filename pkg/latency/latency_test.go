package latency

import (
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	good := map[string]Model{
		"20ms":                  {Kind: Fixed, A: 20 * time.Millisecond},
		"fixed(1s)":             {Kind: Fixed, A: time.Second},
		"normal(20ms, 5ms)":     {Kind: Normal, A: 20 * time.Millisecond, B: 5 * time.Millisecond},
		" lognormal(8ms,30ms) ": {Kind: LogNormal, A: 8 * time.Millisecond, B: 30 * time.Millisecond},
	}
	for in, want := range good {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("%q = %+v, %v; want %+v", in, got, err, want)
		}
		if again, err := Parse(got.String()); err != nil || again != got {
			t.Errorf("%q does not round-trip through %q", in, got.String())
		}
	}
	for _, bad := range []string{"", "fast", "-5ms", "normal(20ms)", "lognormal(20ms, 5ms)", "gamma(1s, 2s)", "normal(20ms, 5ms"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
