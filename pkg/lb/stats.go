package lb

// ServerStats is a LoadBalancer's state at one moment. Its JSON keys are
// those of the original design's GetServerStats.
type ServerStats struct {
	Service      string `json:"service,omitempty"`
	TotalServers int    `json:"total_servers"`
	HealthCounts
	TotalConnections int64  `json:"total_connections"`
	Strategy         string `json:"strategy"`
	StickySession    bool   `json:"sticky_session"`
	Panic            bool   `json:"panic,omitempty"`
	// EligibleServers may take traffic now: not unhealthy, not ejected
	// (all of them in panic mode).
	EligibleServers int `json:"eligible_servers"`
	ActiveSessions  int `json:"active_sessions"`
	// Limited counts what the circuit breakers and rate limit did.
	Limited *LimitCounts    `json:"limited,omitempty"`
	Servers []EndpointStats `json:"servers"`
}

// LimitCounts counts picks that skipped an endpoint at its circuit
// breaker's cap or out of its rate limit, and calls refused at once
// because nothing could take them (ErrOverloaded).
type LimitCounts struct {
	BreakerSkips   uint64 `json:"circuit_breaker_skips"`
	RateLimitSkips uint64 `json:"rate_limit_skips"`
	Overloaded     uint64 `json:"overloaded"`
}

// Limited returns the limits' counts, or nil without limits.
func (lb *LoadBalancer) Limited() *LimitCounts {
	l := lb.rules.Load().limits
	if l == nil {
		return nil
	}
	return &LimitCounts{BreakerSkips: l.breakerSkips.Load(), RateLimitSkips: l.rateSkips.Load(), Overloaded: l.overloaded.Load()}
}

// HealthCounts counts endpoints by health, in ServerStats and HealthStats.
type HealthCounts struct {
	HealthyServers   int `json:"healthy_servers"`
	UnhealthyServers int `json:"unhealthy_servers"`
	UnknownServers   int `json:"unknown_servers"`
}

// Count adds one endpoint of health h.
func (c *HealthCounts) Count(h HealthStatus) {
	switch h {
	case HealthHealthy:
		c.HealthyServers++
	case HealthUnhealthy:
		c.UnhealthyServers++
	default:
		c.UnknownServers++
	}
}

// EndpointStats is one endpoint's part of ServerStats.
type EndpointStats struct {
	ID                string            `json:"id"`
	Address           string            `json:"address"`
	Weight            int               `json:"weight"`
	Zone              string            `json:"zone,omitempty"`
	Metadata          map[string]string `json:"metadata,omitempty"`
	Health            HealthStatus      `json:"health"`
	ActiveConnections int64             `json:"active_connections"`
	TotalRequests     uint64            `json:"total_requests"`
	// Ejected is set while outlier detection keeps the endpoint out;
	// Ejections counts the times it did.
	Ejected   bool   `json:"ejected,omitempty"`
	Ejections uint64 `json:"ejections,omitempty"`
	// OutcomeCounts counts the calls that ended, by what they said about this
	// endpoint, and its health checks.
	OutcomeCounts
	// LatencyEWMAMS is the moving average of recent calls' latency.
	LatencyEWMAMS float64 `json:"latency_ewma_ms"`
}

// GetServerStats returns the current statistics, servers sorted by id.
func (lb *LoadBalancer) GetServerStats() ServerStats {
	s := lb.current()
	r := s.rules
	st := ServerStats{
		Service:         lb.service,
		TotalServers:    len(s.all),
		Strategy:        r.strategy.Name(),
		StickySession:   r.sessions != nil,
		Panic:           s.panic,
		EligibleServers: len(s.eligible),
		Limited:         lb.Limited(),
		Servers:         make([]EndpointStats, 0, len(s.all)),
	}
	for _, e := range s.all {
		es := EndpointStats{
			ID:                e.ID,
			Address:           e.Address,
			Weight:            e.Weight,
			Zone:              e.Zone,
			Metadata:          e.Metadata,
			Health:            e.Health(),
			ActiveConnections: e.InFlight(),
			TotalRequests:     e.Requests(),
			OutcomeCounts:     e.Outcomes(),
			Ejected:           e.ejected.Load(),
			Ejections:         e.ejections.Load(),
		}
		es.LatencyEWMAMS = float64(es.LatencyEWMA.Microseconds()) / 1000
		st.Count(es.Health)
		st.TotalConnections += es.ActiveConnections
		st.Servers = append(st.Servers, es)
	}
	if r.sessions != nil {
		st.ActiveSessions = r.sessions.active(lb.now())
	}
	return st
}
