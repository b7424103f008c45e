package lb

// HealthThresholds turns a run of health check results into a status, the
// same way in the HealthChecker and in the simulator: an endpoint that is
// not yet known turns healthy on its first pass; it takes Unhealthy
// consecutive failures to take an endpoint out and Healthy consecutive
// passes to bring it back.
type HealthThresholds struct {
	Unhealthy int
	Healthy   int
}

// HealthRun counts one endpoint's consecutive check results.
type HealthRun struct {
	Passes, Failures int
}

// Observe records a check result and returns the status it leads to from
// current.
func (t HealthThresholds) Observe(run *HealthRun, current HealthStatus, pass bool) HealthStatus {
	if pass {
		run.Passes++
		run.Failures = 0
		switch {
		case current == HealthUnknown:
			return HealthHealthy
		case current == HealthUnhealthy && run.Passes >= max(t.Healthy, 1):
			return HealthHealthy
		}
		return current
	}
	run.Failures++
	run.Passes = 0
	if current != HealthUnhealthy && run.Failures >= max(t.Unhealthy, 1) {
		return HealthUnhealthy
	}
	return current
}
