package sim

import (
	"sync"
	"time"

	"github.com/peervault/pvlb/pkg/lb"
)

// Measurement gathers what real calls did into a Report of the same shape
// as a simulation's, so that a prediction and reality can be read side by
// side (pvlb load). It is safe for concurrent use.
type Measurement struct {
	mu        sync.Mutex
	report    Report
	endpoints map[string]*lb.Endpoint // what the balancer knows of each server
	index     map[string]int          // server id → its place in report.Servers
	latency   histogram
	servers   []histogram
	// start is when the measurement began, which its time series count
	// from.
	start    time.Time
	timeline *timeline
	// localZone is the client's zone, for the report's cross-zone share.
	localZone string
}

// SetLocalZone names the client's zone (a locality block's local_zone),
// so that the report shows the zones and the attempts that left it.
func (m *Measurement) SetLocalZone(zone string) {
	m.mu.Lock()
	m.localZone = zone
	m.mu.Unlock()
}

// NewMeasurement starts a measurement of calls to service with the given
// strategy over servers; servers found later are added as they answer.
func NewMeasurement(service, strategy, strategyName string, servers []*lb.Endpoint) *Measurement {
	m := &Measurement{index: map[string]int{}, endpoints: map[string]*lb.Endpoint{}, latency: newHistogram(),
		start: time.Now(), timeline: newTimeline(0, 0, 0)}
	m.report.Service, m.report.Strategy, m.report.StrategyName = service, strategy, strategyName
	m.report.Measured = true
	for _, e := range servers {
		m.server(e.ID, e.Address, e.Weight)
		m.endpoints[e.ID] = e
	}
	return m
}

// server returns id's place, adding it; the caller holds mu or owns m.
func (m *Measurement) server(id, address string, weight int) int {
	if i, ok := m.index[id]; ok {
		return i
	}
	m.index[id] = len(m.report.Servers)
	m.report.Servers = append(m.report.Servers, ServerReport{ID: id, Address: address, Weight: weight})
	m.servers = append(m.servers, newHistogram())
	m.timeline.attempts = append(m.timeline.attempts, nil)
	return len(m.report.Servers) - 1
}

// MeasuredAttempt is one attempt of a call: the server that took it, how
// long it took, and whether it failed.
type MeasuredAttempt struct {
	Server, Address string
	Took            time.Duration
	Failed          bool
}

// Call records one call that began at began: its attempts, how long it
// took end to end, and whether it succeeded in the end.
func (m *Measurement) Call(attempts []MeasuredAttempt, began time.Time, took time.Duration, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	at := int64(began.Sub(m.start))
	m.timeline.finish(at+int64(took), ok, int64(took))
	r := &m.report
	r.Requests++
	if ok {
		r.Succeeded++
		m.latency.record(int64(took))
	} else {
		r.Failed++
	}
	if len(attempts) > 1 {
		r.Retries += len(attempts) - 1
		if ok {
			r.Recovered++
		}
	}
	if len(attempts) == 0 {
		r.NoHealthy++
	}
	for _, a := range attempts {
		i := m.server(a.Server, a.Address, 1)
		m.timeline.attempt(at, int32(i))
		s := &r.Servers[i]
		s.Requests++
		if a.Failed {
			s.Errors++
		} else {
			m.servers[i].record(int64(a.Took))
		}
	}
}

// Report returns what was measured over elapsed (since NewMeasurement),
// with each server's share of the attempts and the time series.
func (m *Measurement) Report(elapsed time.Duration) *Report {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.report
	r.Servers = append([]ServerReport(nil), m.report.Servers...)
	r.Events = []Event{}
	r.SimulatedTime = Millis(elapsed)
	if elapsed > 0 {
		r.Throughput = float64(r.Succeeded) / elapsed.Seconds()
	}
	r.Latency = percentiles(&m.latency)
	timeline, perServer := m.timeline.series(int64(elapsed))
	r.Timeline = timeline
	r.LatencyCDF = latencyCDF(&m.latency)
	attempts, weights := 0, 0
	for _, s := range r.Servers {
		attempts += s.Requests
		weights += s.Weight
	}
	for i := range r.Servers {
		s := &r.Servers[i]
		s.AttemptTime = percentiles(&m.servers[i])
		s.Timeline = perServer[i]
		if e, ok := m.endpoints[s.ID]; ok {
			s.Zone = e.Zone
			s.Outcomes, s.FinalHealth = e.Outcomes(), e.Health()
			s.LatencyEWMA = Millis(s.Outcomes.LatencyEWMA)
		}
		if attempts > 0 {
			s.Share = float64(s.Requests) / float64(attempts)
		}
		s.ExpectedShare = expectedShare(r.Strategy, s.Weight, weights, len(r.Servers))
	}
	r.tallyZones(false, m.localZone)
	return &r
}
