package lb

import (
	"fmt"
	"reflect"
	"slices"
)

// Reconfigure makes the balancer follow config from now on. Its endpoints
// stay, with their health, statistics, calls in flight and ejections, and
// so does whatever config does not change: an unchanged strategy keeps
// what it learnt, unchanged sticky sessions keep their bindings, unchanged
// limits their counts. A changed outlier detection runs the ejections in
// progress to their end under its new settings; none returns them all.
//
// Picks never wait: one that began under the old configuration picks
// under it, and the next under the new. When the change makes the
// balancer count calls in flight that it did not (a strategy that reads
// load, or a circuit breaker, where there was none), the counts start
// with the calls picked from the change on; the calls picked before end
// without taking from them what they did not add (see releaseSettling).
// config must name the same service; an invalid config changes nothing.
func (lb *LoadBalancer) Reconfigure(config Config) error {
	if err := config.validate(); err != nil {
		return fmt.Errorf("load balancer config: %w", err)
	}
	if config.Service != lb.service {
		return fmt.Errorf("load balancer config: service %q cannot become %q: a LoadBalancer balances one service", lb.service, config.Service)
	}
	resync, err := lb.reconfigure(config)
	if err != nil || resync == nil {
		return err
	}
	// A changed subset chooses again from what discovery last handed over.
	return lb.Sync(resync)
}

// reconfigure is Reconfigure under the lock; it returns the endpoints to
// sync again when the subset changed.
func (lb *LoadBalancer) reconfigure(config Config) ([]EndpointSpec, error) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	prev := lb.rules.Load()
	changed := changedSettings(prev.cfg, config)
	if len(changed) == 0 {
		return nil, nil
	}
	r, err := lb.newRules(config, prev, nil)
	if err != nil {
		return nil, fmt.Errorf("load balancer config: %w", err)
	}
	lb.rules.Store(r)
	if prev.outliers != nil && r.outliers == nil {
		for _, e := range lb.endpoints {
			if e.ejected.Load() {
				e.ejected.Store(false)
				lb.event(e, "returned: outlier detection is off")
			}
		}
	}
	// Subscribers hear of it too: what they read of the configuration
	// (load reports, the metadata picks read) may have changed.
	lb.publishMembership(lb.allLocked(), true)
	lb.log.Info("configuration changed", "changed", changed, "strategy", r.strategy.Name())
	if lb.discovered != nil && !reflect.DeepEqual(prev.cfg.Subset, config.Subset) {
		return slices.Clone(lb.discovered), nil
	}
	return nil, nil
}

// changedSettings names the blocks and settings that differ between two
// configurations, by their HCL names.
func changedSettings(a, b Config) []string {
	var changed []string
	for _, part := range []struct {
		name string
		a, b any
	}{
		{"strategy", a.Strategy, b.Strategy},
		{"sticky_session", a.Sticky, b.Sticky},
		{"outcomes", a.Outcomes, b.Outcomes},
		{"panic_threshold", a.PanicThreshold, b.PanicThreshold},
		{"outlier_detection", a.OutlierDetection, b.OutlierDetection},
		{"circuit_breakers", a.CircuitBreakers, b.CircuitBreakers},
		{"rate_limit", a.RateLimit, b.RateLimit},
		{"locality", a.Locality, b.Locality},
		{"subset", a.Subset, b.Subset},
	} {
		if !reflect.DeepEqual(part.a, part.b) {
			changed = append(changed, part.name)
		}
	}
	return changed
}
