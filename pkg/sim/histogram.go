package sim

import (
	"math/bits"
	"time"
)

// histogram records durations in log-linear buckets: exact below
// 2·2^sub ns, then 2^sub buckets per power of two. With sub = 6 (a run's
// own histograms) any percentile is within 1.6% of the truth; with 4 (a
// time series' point, of which a run keeps hundreds) within 6.3%, in a
// quarter of the memory. Recording is O(1) and allocation-free; the
// buckets cover up to 2^40ns (18 minutes), and larger values land in the
// last bucket while max stays exact.
type histogram struct {
	counts []uint32
	total  uint64
	max    int64
	sub    uint8
}

const (
	histSubBits       = 6
	histSeriesSubBits = 4
	histMaxShift      = 40
)

func newHistogram() histogram { return newHistogramOf(histSubBits) }

func newHistogramOf(sub uint8) histogram {
	return histogram{counts: make([]uint32, bucketCount(sub)), sub: sub}
}

func bucketCount(sub uint8) int { return (histMaxShift-int(sub)+1)<<sub + 1<<sub }

func (h *histogram) bucketOf(v int64) int {
	sub := h.sub
	if v < 2<<sub {
		return int(max(v, 0))
	}
	e := bits.Len64(uint64(v)) - 1 - int(sub) // how far v is shifted to keep sub+1 significant bits
	if e > histMaxShift-int(sub) {
		return len(h.counts) - 1
	}
	return (e+1)<<sub + int(uint64(v)>>e) - 1<<sub
}

// bucketMid is the middle of a bucket's range, the estimate for its values.
func (h *histogram) bucketMid(b int) int64 {
	sub := h.sub
	if b < 2<<sub {
		return int64(b)
	}
	e := b>>sub - 1
	lo := int64(b&(1<<sub-1)+1<<sub) << e
	return lo + (int64(1)<<e)/2
}

func (h *histogram) record(v int64) {
	h.counts[h.bucketOf(v)]++
	h.total++
	h.max = max(h.max, v)
}

// quantile returns the q-quantile (0 < q <= 1) estimate.
func (h *histogram) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(q*float64(h.total) + 0.5)
	rank = min(max(rank, 1), h.total)
	var seen uint64
	for b, c := range h.counts {
		seen += uint64(c)
		if seen >= rank {
			return time.Duration(min(h.bucketMid(b), h.max))
		}
	}
	return time.Duration(h.max)
}

// merge adds o's counts to h's; both have the same precision.
func (h *histogram) merge(o *histogram) {
	if o.total == 0 {
		return
	}
	if h.counts == nil {
		*h = newHistogramOf(o.sub)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.max = max(h.max, o.max)
}
