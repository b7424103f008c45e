package latency

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
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
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%q = %+v, %v; want %+v", in, got, err, want)
		}
		if again, err := Parse(got.String()); err != nil || !reflect.DeepEqual(again, got) {
			t.Errorf("%q does not round-trip through %q", in, got.String())
		}
	}
	for _, bad := range []string{"", "fast", "-5ms", "normal(20ms)", "lognormal(20ms, 5ms)", "gamma(1s, 2s)", "normal(20ms, 5ms"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// Recorded latencies come from a file of durations or milliseconds, or a
// CSV column, and are resampled: every draw is one of them.
func TestRecorded(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "latencies.txt")
	csv := filepath.Join(dir, "calls.csv")
	write := func(path, text string) {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(plain, "# recorded on monday\n12ms\n\n7.5\n1.5s\n")
	write(csv, "method,took_ms,code\nGet,10,OK\nGet,30,OK\n")
	m, err := Parse("recorded(" + plain + ")")
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{12 * time.Millisecond, 7500 * time.Microsecond, 1500 * time.Millisecond}
	if !reflect.DeepEqual(m.Samples, want) || m.Kind != Recorded {
		t.Fatalf("samples %v", m.Samples)
	}
	if again, err := Parse(m.String()); err != nil || !reflect.DeepEqual(again, m) {
		t.Fatalf("%q does not round-trip: %v", m.String(), err)
	}
	if mean := m.Mean(); mean != (12*time.Millisecond+7500*time.Microsecond+1500*time.Millisecond)/3 {
		t.Errorf("mean %v", mean)
	}
	r := rand.New(rand.NewPCG(1, 2))
	seen := map[time.Duration]bool{}
	s := m.Sampler()
	for range 300 {
		seen[time.Duration(s.Sample(r))] = true
	}
	if len(seen) != 3 {
		t.Errorf("300 draws gave %d distinct latencies, want all 3", len(seen))
	}
	if slow := m.Scale(2); slow.Samples[0] != 24*time.Millisecond || !strings.HasSuffix(slow.String(), ") × 2") || m.Samples[0] != 12*time.Millisecond {
		t.Errorf("scaled: %v, %q (the original %v must not change)", slow.Samples[0], slow.String(), m.Samples[0])
	}
	replay, err := Parse("replay(" + plain + ")")
	if err != nil || replay.Kind != Replayed || !strings.HasPrefix(replay.String(), "replay(") {
		t.Fatalf("replay: %v, %v", replay, err)
	}
	// In order, starting over after the last; copies of the model share
	// their place, a sampler has its own.
	copied := replay
	got := []time.Duration{replay.Sample(r), copied.Sample(r), replay.Sample(r), copied.Sample(r)}
	if want := append(want[:3:3], want[0]); !reflect.DeepEqual(got, want) {
		t.Errorf("replayed %v, want %v", got, want)
	}
	if fresh := replay.Sampler(); time.Duration(fresh.Sample(r)) != want[0] {
		t.Error("a new sampler does not start at the first sample")
	}
	c, err := Parse("recorded(" + csv + ", took_ms)")
	if err != nil || !reflect.DeepEqual(c.Samples, []time.Duration{10 * time.Millisecond, 30 * time.Millisecond}) {
		t.Fatalf("csv: %v, %v", c.Samples, err)
	}
	for in, want := range map[string]string{
		"recorded(" + filepath.Join(dir, "nope.txt") + ")": "no such file",
		"recorded(" + csv + ", took)":                      "no column \"took\"",
		"recorded(" + csv + ")":                            "calls.csv:1: \"method,took_ms,code\" is not a duration",
		"recorded()":                                       "recorded takes a file",
	} {
		if _, err := Parse(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", in, err, want)
		}
	}
}
