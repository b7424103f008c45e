// Package policy holds the settings that more than one part of pvlb reads
// the same way: how calls are retried, how endpoints are health checked,
// which call results count against an endpoint, and how connections are
// made. The configuration produces them, and the gRPC layer and the
// simulator read them as they are, so a setting has one name from the HCL
// to the code that acts on it. It imports neither gRPC nor the simulator.
package policy

import (
	"fmt"
	"math"
	"path"
	"strings"
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
	// Delay is the first backoff (gRFC A6's initialBackoff; `delay` or
	// `initial_backoff` in HCL); each later one is BackoffMultiplier
	// times the one before, up to MaxBackoff, with ±20% jitter.
	Delay time.Duration `json:"delay"`
	// BackoffMultiplier grows the backoff; zero means 2.
	BackoffMultiplier float64 `json:"backoff_multiplier,omitempty"`
	// MaxBackoff caps a backoff; zero is no cap.
	MaxBackoff time.Duration `json:"max_backoff,omitempty"`
	// FailoverTimeout bounds the time spent retrying one call.
	FailoverTimeout time.Duration `json:"failover_timeout"`
	// PerTryTimeout, Envoy's per_try_timeout, ends an attempt that has not
	// answered in time: it counts as a failure of its endpoint with
	// DEADLINE_EXCEEDED, and the call moves on to another endpoint
	// (DEADLINE_EXCEEDED need not be in RetryableCodes). Zero is none:
	// an attempt may take all the call's deadline.
	PerTryTimeout time.Duration `json:"per_try_timeout,omitempty"`
	// RetryableCodes are the status codes retried on another endpoint;
	// empty means DefaultRetryableCodes.
	RetryableCodes statuscode.Set `json:"retryable_codes"`
	// Budget bounds retries to a share of calls (Finagle's retry budget);
	// nil is none. The default is lb.DefaultRetryBudget.
	Budget *lb.RetryBudget `json:"budget,omitempty"`
	// Throttling is gRFC A6's retry throttling; nil is none.
	Throttling *lb.RetryThrottling `json:"throttling,omitempty"`
}

// Backoff is the wait before retry number n (from 1), before jitter:
// Delay × BackoffMultiplier^(n-1), at most MaxBackoff.
func (r Retry) Backoff(n int) time.Duration {
	mult := r.BackoffMultiplier
	if mult == 0 {
		mult = 2
	}
	d := float64(r.Delay) * math.Pow(mult, float64(max(n-1, 0)))
	if r.MaxBackoff > 0 {
		d = min(d, float64(r.MaxBackoff))
	}
	return time.Duration(min(d, float64(math.MaxInt64/2)))
}

// Jitter spreads a backoff by ±20%, given a uniform draw u in [0, 1).
func Jitter(d time.Duration, u float64) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*u))
}

// Limiter returns the retry budget and throttling's shared state for one
// client, or nil when neither is set.
func (r Retry) Limiter(start time.Time) (*lb.RetryLimiter, error) {
	if r.Budget == nil && r.Throttling == nil {
		return nil, nil
	}
	return lb.NewRetryLimiter(r.Budget, r.Throttling, start)
}

// PerTryCode is the status of an attempt its per-try timeout ended.
const PerTryCode = statuscode.DeadlineExceeded

// Retries reports whether a call that failed with code is retried.
func (r Retry) Retries(code statuscode.Code) bool {
	codes := r.RetryableCodes
	if codes == 0 {
		codes = DefaultRetryableCodes
	}
	return codes.Has(code)
}

// Hedging is a service's `hedging` block, gRFC A6's hedgingPolicy: a
// unary call to one of Methods that has not answered within Delay is sent
// again to another endpoint, up to MaxAttempts copies in all; the first
// good answer wins and the others are cancelled. A copy that fails with
// one of NonFatalCodes is followed by the next at once; any other failure
// ends the call. Hedges count against the retry budget.
type Hedging struct {
	MaxAttempts int           `json:"max_attempts"`
	Delay       time.Duration `json:"delay"`
	// NonFatalCodes are A6's nonFatalStatusCodes; empty is none.
	NonFatalCodes statuscode.Set `json:"non_fatal_codes"`
	// Methods name the methods safe to run more than once: only they are
	// hedged. A name with a slash is matched against the full method name
	// ("/peervault.PeerVaultService/GetUserData", or a shell pattern such
	// as "/peervault.PeerVaultService/Get*"); one without, against the
	// method's own name ("GetUserData", "Get*"; "*" is every method).
	Methods []string `json:"methods"`
}

// MaxHedgingAttempts is A6's cap on hedged copies.
const MaxHedgingAttempts = 5

// Validate reports a setting out of range: what HCL checks attribute by
// attribute, for a Hedging built in Go.
func (h *Hedging) Validate() error {
	switch {
	case h == nil:
		return nil
	case h.MaxAttempts < 2 || h.MaxAttempts > MaxHedgingAttempts:
		return fmt.Errorf("hedging: max_attempts must be from 2 to %d, not %d", MaxHedgingAttempts, h.MaxAttempts)
	case h.Delay < 0:
		return fmt.Errorf("hedging: delay must not be negative, not %s", h.Delay)
	case len(h.Methods) == 0:
		return fmt.Errorf("hedging: methods lists none to hedge")
	}
	for _, m := range h.Methods {
		if _, err := path.Match(m, ""); err != nil || m == "" {
			return fmt.Errorf("hedging: %q is neither a method name nor a valid pattern", m)
		}
	}
	return nil
}

// Hedges reports whether calls to method are hedged.
func (h *Hedging) Hedges(method string) bool {
	if h == nil {
		return false
	}
	short := method[strings.LastIndexByte(method, '/')+1:]
	for _, m := range h.Methods {
		name := method
		if !strings.Contains(m, "/") {
			name = short
		}
		if ok, _ := path.Match(m, name); ok {
			return true
		}
	}
	return false
}

// DefaultRetryableCodes are retried by default: UNAVAILABLE is what gRPC
// reports for refused and broken connections, before the server could act
// on the call, so a retry cannot run it twice.
var DefaultRetryableCodes = statuscode.SetOf(statuscode.Unavailable)

// DefaultRetry returns the original design's defaults, 3 retries of
// UNAVAILABLE 1s, 2s and 4s apart within 10s, under Finagle's retry
// budget (20% of calls plus 10 a second, over 10s).
func DefaultRetry() Retry {
	budget := lb.DefaultRetryBudget()
	return Retry{MaxRetries: 3, Delay: time.Second, FailoverTimeout: 10 * time.Second, RetryableCodes: DefaultRetryableCodes, Budget: &budget}
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
