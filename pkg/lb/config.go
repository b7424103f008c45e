package lb

import (
	"fmt"
	"time"
)

// LoadBalancerConfig configures a LoadBalancer. The field names and defaults
// are those of PeerVault's original balancer design.
type LoadBalancerConfig struct {
	// Service names the balanced service in errors, logs and statistics.
	Service string `json:"service,omitempty"`
	// Strategy is one of StrategyKinds().
	Strategy string `json:"strategy"`
	// ChoiceCount tunes least_connections; see StrategyOptions.
	ChoiceCount int `json:"choice_count,omitempty"`

	HealthCheckInterval time.Duration `json:"health_check_interval"`
	HealthCheckTimeout  time.Duration `json:"health_check_timeout"`
	// UnhealthyThreshold consecutive failed checks mark an endpoint
	// unhealthy; HealthyThreshold consecutive passes bring it back.
	UnhealthyThreshold int `json:"unhealthy_threshold"`
	HealthyThreshold   int `json:"healthy_threshold"`

	// MaxRetries is how many times a failed call is retried after its first
	// attempt, each on a different endpoint where one is left.
	MaxRetries int `json:"max_retries"`
	// RetryDelay is the first backoff; later ones double, with jitter.
	RetryDelay time.Duration `json:"retry_delay"`
	// FailoverTimeout bounds the time spent retrying one call.
	FailoverTimeout time.Duration `json:"failover_timeout"`

	// StickySession binds a session id (see WithSession) to an endpoint
	// for SessionTimeout, renewed on every use.
	StickySession  bool          `json:"sticky_session"`
	SessionTimeout time.Duration `json:"session_timeout"`
}

// DefaultLoadBalancerConfig returns the defaults: round robin, health checks
// every 30s with a 5s timeout, 3 retries 1s apart within 10s, no stickiness,
// 5 minute sessions.
func DefaultLoadBalancerConfig() *LoadBalancerConfig {
	return &LoadBalancerConfig{
		Strategy:            RoundRobin,
		HealthCheckInterval: 30 * time.Second,
		HealthCheckTimeout:  5 * time.Second,
		UnhealthyThreshold:  3,
		HealthyThreshold:    2,
		MaxRetries:          3,
		RetryDelay:          time.Second,
		FailoverTimeout:     10 * time.Second,
		StickySession:       false,
		SessionTimeout:      5 * time.Minute,
	}
}

func (c *LoadBalancerConfig) validate() error {
	switch {
	case c.MaxRetries < 0:
		return fmt.Errorf("max retries %d is negative", c.MaxRetries)
	case c.RetryDelay < 0:
		return fmt.Errorf("retry delay %s is negative", c.RetryDelay)
	case c.StickySession && c.SessionTimeout <= 0:
		return fmt.Errorf("sticky sessions need a positive session timeout, not %s", c.SessionTimeout)
	case c.UnhealthyThreshold < 0 || c.HealthyThreshold < 0:
		return fmt.Errorf("health thresholds must not be negative")
	}
	return nil
}
