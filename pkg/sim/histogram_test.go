package sim

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramQuantilesWithinOnePointSixPercent(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	h := newHistogram()
	vals := make([]int64, 100000)
	for i := range vals {
		vals[i] = int64(r.ExpFloat64() * float64(20*time.Millisecond))
		h.record(vals[i])
	}
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := float64(vals[int(q*float64(len(vals)))-1])
		got := float64(h.quantile(q))
		if d := (got - exact) / exact; d > 0.017 || d < -0.017 {
			t.Errorf("q%.3f = %v, exact %v (%.2f%% off)", q, time.Duration(got), time.Duration(exact), d*100)
		}
	}
	if h.quantile(1) != time.Duration(vals[len(vals)-1]) {
		t.Errorf("max = %v, want %v", h.quantile(1), vals[len(vals)-1])
	}
}

func TestHistogramBucketsAreMonotonic(t *testing.T) {
	prev := -1
	for v := int64(0); v < 1<<22; v += 1 + v/97 {
		b := bucketOf(v)
		if b < prev {
			t.Fatalf("bucket of %d is %d, below %d", v, b, prev)
		}
		if mid := bucketMid(b); float64(mid) < float64(v)*0.98 || float64(mid) > float64(v)*1.02+1 {
			t.Fatalf("value %d in bucket %d whose middle is %d", v, b, mid)
		}
		prev = b
	}
	if b := bucketOf(1 << 62); b != histBuckets-1 {
		t.Fatalf("huge value in bucket %d", b)
	}
}
