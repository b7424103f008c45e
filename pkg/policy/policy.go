// Package policy holds the settings that more than one part of pvlb reads
// the same way: how calls are retried, how endpoints are health checked,
// which call results count against an endpoint, and how connections are
// made. The configuration produces them, and the gRPC layer and the
// simulator read them as they are, so a setting has one name from the HCL
// to the code that acts on it. It imports neither gRPC nor the simulator.
package policy

import (
	"time"

	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/statuscode"
	"github.com/peervault/pvlb/pkg/tlsfiles"
)

// Retry is a service's `retry` block: how a failed call is tried again.
type Retry struct {
	// MaxRetries is how many times a failed call is retried after its
	// first attempt, each on a different endpoint where one is left.
	MaxRetries int `json:"max_retries"`
	// Delay is the first backoff; later ones double, with ±20% jitter.
	Delay time.Duration `json:"delay"`
	// FailoverTimeout bounds the time spent retrying one call.
	FailoverTimeout time.Duration `json:"failover_timeout"`
	// RetryableCodes are the status codes retried on another endpoint;
	// empty means DefaultRetryableCodes.
	RetryableCodes statuscode.Set `json:"retryable_codes"`
}

// Retries reports whether a call that failed with code is retried.
func (r Retry) Retries(code statuscode.Code) bool {
	codes := r.RetryableCodes
	if codes == 0 {
		codes = DefaultRetryableCodes
	}
	return codes.Has(code)
}

// DefaultRetryableCodes are retried by default: UNAVAILABLE is what gRPC
// reports for refused and broken connections, before the server could act
// on the call, so a retry cannot run it twice.
var DefaultRetryableCodes = statuscode.SetOf(statuscode.Unavailable)

// DefaultRetry returns the original design's defaults: 3 retries 1s apart
// within 10s, of UNAVAILABLE only.
func DefaultRetry() Retry {
	return Retry{MaxRetries: 3, Delay: time.Second, FailoverTimeout: 10 * time.Second, RetryableCodes: DefaultRetryableCodes}
}

// HealthCheck is a `health_policy` block: how endpoints are checked with
// grpc.health.v1.
type HealthCheck struct {
	Interval time.Duration `json:"interval"`
	Timeout  time.Duration `json:"timeout"`
	// UnhealthyThreshold consecutive failed checks mark an endpoint
	// unhealthy; HealthyThreshold consecutive passes bring it back.
	UnhealthyThreshold int `json:"unhealthy_threshold"`
	HealthyThreshold   int `json:"healthy_threshold"`
	// Service is the name sent in each check; empty asks for the server's
	// overall health.
	Service string `json:"service,omitempty"`
}

// DefaultHealthCheck returns the original design's defaults: every 30s
// with a 5s timeout, 3 failures out and 2 passes back in.
func DefaultHealthCheck() HealthCheck {
	return HealthCheck{Interval: 30 * time.Second, Timeout: 5 * time.Second, UnhealthyThreshold: 3, HealthyThreshold: 2}
}

// Thresholds returns the check's thresholds as the balancer core applies
// them.
func (h HealthCheck) Thresholds() lb.HealthThresholds {
	return lb.HealthThresholds{Unhealthy: h.UnhealthyThreshold, Healthy: h.HealthyThreshold}
}

// Client is a service's `client` block: how connections to its endpoints
// are made.
type Client struct {
	ConnectionTimeout time.Duration `json:"connection_timeout"`
	KeepAliveInterval time.Duration `json:"keepalive_interval"`
	KeepAliveTimeout  time.Duration `json:"keepalive_timeout"`
	MaxReceiveSize    int           `json:"max_receive_size"`
	MaxSendSize       int           `json:"max_send_size"`
	UserAgent         string        `json:"user_agent"`
	// TLS, when set, secures connections to endpoints; nil is plaintext.
	TLS *tlsfiles.Config `json:"tls,omitempty"`
}

// DefaultClient returns the original design's defaults: 30s to connect,
// keepalive pings every 30s with a 5s timeout, 4 MiB messages each way,
// user agent peervault-grpc-client/1.0.
func DefaultClient() Client {
	return Client{
		ConnectionTimeout: 30 * time.Second,
		KeepAliveInterval: 30 * time.Second,
		KeepAliveTimeout:  5 * time.Second,
		MaxReceiveSize:    4 << 20,
		MaxSendSize:       4 << 20,
		UserAgent:         "peervault-grpc-client/1.0",
	}
}
