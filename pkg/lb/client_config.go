package lb

import (
	"time"

	"google.golang.org/grpc/codes"
)

// LoadBalancedClientConfig configures the gRPC side of a balanced client:
// retries and the connections to each endpoint. Field names and defaults
// are those of PeerVault's original design.
type LoadBalancedClientConfig struct {
	MaxRetries        int           `json:"max_retries"`
	RetryDelay        time.Duration `json:"retry_delay"`
	FailoverTimeout   time.Duration `json:"failover_timeout"`
	ConnectionTimeout time.Duration `json:"connection_timeout"`
	KeepAliveInterval time.Duration `json:"keepalive_interval"`
	KeepAliveTimeout  time.Duration `json:"keepalive_timeout"`
	MaxReceiveSize    int           `json:"max_receive_size"`
	MaxSendSize       int           `json:"max_send_size"`
	UserAgent         string        `json:"user_agent"`
	// TLS, when set, secures connections to backends; nil is plaintext.
	TLS *TLSConfig `json:"tls,omitempty"`
	// RetryableCodes are the status codes retried on another endpoint.
	// Empty means DefaultRetryableCodes.
	RetryableCodes []codes.Code `json:"retryable_codes,omitempty"`
	// SessionMetadataKey names the request metadata that carries a sticky
	// session id when the context has none from WithSession.
	SessionMetadataKey string `json:"session_metadata_key,omitempty"`
}

// DefaultRetryableCodes are retried by default: UNAVAILABLE is what gRPC
// reports for refused and broken connections, before the server could act
// on the call, so a retry cannot run it twice.
var DefaultRetryableCodes = []codes.Code{codes.Unavailable}

// DefaultLoadBalancedClientConfig returns the defaults: 3 retries 1s apart
// within 10s, 30s to connect, keepalive pings every 30s with a 5s timeout,
// 4 MiB messages each way, user agent peervault-grpc-client/1.0.
func DefaultLoadBalancedClientConfig() *LoadBalancedClientConfig {
	return &LoadBalancedClientConfig{
		MaxRetries:        3,
		RetryDelay:        time.Second,
		FailoverTimeout:   10 * time.Second,
		ConnectionTimeout: 30 * time.Second,
		KeepAliveInterval: 30 * time.Second,
		KeepAliveTimeout:  5 * time.Second,
		MaxReceiveSize:    4 << 20,
		MaxSendSize:       4 << 20,
		UserAgent:         "peervault-grpc-client/1.0",
	}
}
