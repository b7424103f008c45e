package sim

import "github.com/peervault/pvlb/pkg/lb"

// loadMeter is what a simulated server would report of its load (ORCA),
// as the demo server measures it: the attempts it answered and failed and
// the time its places were busy, over the last second of simulated time in
// ten buckets of 100ms.
type loadMeter struct {
	answered, failed [10]int
	busy             [10]float64 // places busy × nanoseconds
	bucket           int64       // the bucket (now / loadBucket) the slots end at
	at               int64       // busy is integrated up to here
}

const loadBucket = int64(100e6) // 100ms

// advance integrates busy places up to now, clearing the buckets it
// enters; the caller passes how many places were busy since the last call.
func (m *loadMeter) advance(now int64, busy int) {
	for {
		b := m.at / loadBucket
		for m.bucket < b {
			m.bucket++
			if b-m.bucket >= 10 {
				m.bucket = b // a second or more idle: every slot is stale
				m.answered, m.failed, m.busy = [10]int{}, [10]int{}, [10]float64{}
			}
			i := m.bucket % 10
			m.answered[i], m.failed[i], m.busy[i] = 0, 0, 0
		}
		if m.at >= now {
			return
		}
		end := min(now, (b+1)*loadBucket)
		m.busy[b%10] += float64(busy) * float64(end-m.at)
		m.at = end
	}
}

// answer counts an attempt the server answered at now.
func (m *loadMeter) answer(now int64, busy int, failed bool) {
	m.advance(now, busy)
	m.answered[m.bucket%10]++
	if failed {
		m.failed[m.bucket%10]++
	}
}

// report is the server's load report at now: answers and errors a second,
// and as utilization its busy places over its capacity or, without one
// (it takes any number at once), the mean number busy.
func (m *loadMeter) report(now int64, busy, capacity int) lb.LoadReport {
	m.advance(now, busy)
	window := float64(9*loadBucket + now%loadBucket)
	if now < 10*loadBucket {
		window = float64(max(now, 1))
	}
	var answered, failed int
	var busyTime float64
	for i := range 10 {
		answered += m.answered[i]
		failed += m.failed[i]
		busyTime += m.busy[i]
	}
	utilization := busyTime / window
	if capacity > 0 {
		utilization /= float64(capacity)
	}
	return lb.LoadReport{CPUUtilization: utilization, QPS: float64(answered) / window * 1e9, EPS: float64(failed) / window * 1e9}
}
