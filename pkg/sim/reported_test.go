package sim

import (
	"math"
	"testing"
)

// A server answering 50 attempts a second, each holding one of its 4
// places for 20ms, reports 50 QPS, one place busy on average: 25%.
func TestLoadMeterReports(t *testing.T) {
	var m loadMeter
	busy := 0
	for k := range 200 { // 4 seconds
		start := int64(k) * 20e6
		m.advance(start, busy)
		busy++
		m.answer(start+20e6, busy, k%10 == 0)
		busy--
	}
	r := m.report(4e9, busy, 4)
	if math.Abs(r.QPS-50) > 2.5 || math.Abs(r.EPS-5) > 0.6 || math.Abs(r.CPUUtilization-0.25) > 0.01 { // a 100ms bucket's edge
		t.Errorf("report %+v, want 50 QPS, 5 EPS, utilization 0.25", r)
	}
	// A second idle later, nothing is left in the window.
	if r := m.report(5.5e9, 0, 4); r.QPS != 0 || r.CPUUtilization != 0 {
		t.Errorf("after an idle second: %+v", r)
	}
}
