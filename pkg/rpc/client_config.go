package rpc

import (
	"log/slog"

	"github.com/peervault/pvlb/pkg/policy"
)

// LoadBalancedClientConfig configures the gRPC side of a balanced client:
// how calls are retried and how connections are made. Which results count
// against an endpoint is the balancer's (lb.Config.Outcomes). The embedded parts keep the original design's
// field names (MaxRetries, FailoverTimeout, ConnectionTimeout, UserAgent…).
type LoadBalancedClientConfig struct {
	policy.Retry
	policy.Client
	// Hedging, when set, hedges unary calls to the methods it names.
	Hedging *policy.Hedging
}

// DefaultLoadBalancedClientConfig returns the defaults: 3 retries of
// UNAVAILABLE 1s apart within 10s, 30s to connect, keepalive pings every 30s with a 5s timeout, 4 MiB
// messages each way, user agent peervault-grpc-client/1.0.
func DefaultLoadBalancedClientConfig() *LoadBalancedClientConfig {
	return &LoadBalancedClientConfig{
		Retry:  policy.DefaultRetry(),
		Client: policy.DefaultClient(),
	}
}

func loggerOrDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
