package sim

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramQuantilesWithinTheirPrecision(t *testing.T) {
	for _, tc := range []struct {
		sub  uint8
		err  float64
		name string
	}{{histSubBits, 0.017, "run"}, {histSeriesSubBits, 0.065, "series"}} {
		r := rand.New(rand.NewPCG(1, 2))
		h := newHistogramOf(tc.sub)
		vals := make([]int64, 100000)
		for i := range vals {
			vals[i] = int64(r.ExpFloat64() * float64(20*time.Millisecond))
			h.record(vals[i])
		}
		slices.Sort(vals)
		for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
			exact := float64(vals[int(q*float64(len(vals)))-1])
			got := float64(h.quantile(q))
			if d := (got - exact) / exact; math.Abs(d) > tc.err {
				t.Errorf("%s: q%.3f = %v, exact %v (%.2f%% off)", tc.name, q, time.Duration(got), time.Duration(exact), d*100)
			}
		}
		if h.quantile(1) != time.Duration(vals[len(vals)-1]) {
			t.Errorf("%s: max = %v, want %v", tc.name, h.quantile(1), vals[len(vals)-1])
		}
	}
}

func TestHistogramBucketsAreMonotonic(t *testing.T) {
	for _, sub := range []uint8{histSubBits, histSeriesSubBits} {
		h := newHistogramOf(sub)
		within := 1 / float64(int(1)<<sub) // half a bucket's width, relative
		prev := -1
		for v := int64(0); v < 1<<22; v += 1 + v/97 {
			b := h.bucketOf(v)
			if b < prev {
				t.Fatalf("sub %d: bucket of %d is %d, below %d", sub, v, b, prev)
			}
			if mid := h.bucketMid(b); float64(mid) < float64(v)*(1-within) || float64(mid) > float64(v)*(1+within)+1 {
				t.Fatalf("sub %d: value %d in bucket %d whose middle is %d", sub, v, b, mid)
			}
			prev = b
		}
		if b := h.bucketOf(1 << 62); b != len(h.counts)-1 {
			t.Fatalf("sub %d: huge value in bucket %d", sub, b)
		}
	}
}
