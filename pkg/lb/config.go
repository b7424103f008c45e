package lb

import (
	"fmt"
	"strings"
	"time"

	"github.com/peervault/pvlb/pkg/statuscode"
)

// Config is what a LoadBalancer reads: the service's name, its strategy,
// its sticky sessions and how call results are classified.
type Config struct {
	// Service names the balanced service in errors, logs and statistics.
	Service  string         `json:"service,omitempty"`
	Strategy StrategyConfig `json:"strategy"`
	Sticky   StickyConfig   `json:"sticky_session"`
	Outcomes OutcomeConfig  `json:"outcomes"`
	// PanicThreshold, a percentage, is Envoy's healthy panic threshold:
	// when fewer than this share of the endpoints may take traffic, the
	// balancer picks among all of them, unhealthy ones too, rather than
	// piling every call onto the few left. Zero (the default) is off;
	// Envoy's usual value is 50.
	PanicThreshold float64 `json:"panic_threshold,omitempty"`
	// OutlierDetection, when set, ejects endpoints that the outcomes of
	// real calls show failing; nil is off.
	OutlierDetection *OutlierDetection `json:"outlier_detection,omitempty"`
	// CircuitBreakers cap calls in flight and RateLimit each endpoint's
	// calls per second; nil is none.
	CircuitBreakers *CircuitBreakers `json:"circuit_breakers,omitempty"`
	RateLimit       *RateLimit       `json:"rate_limit,omitempty"`
	// Locality, when set, routes calls by zone (zone-aware routing or
	// priorities); nil balances over every zone alike.
	Locality *Locality `json:"locality,omitempty"`
	// Subset, when set, keeps only this client's subset of the endpoints
	// discovery hands over (Sync); nil keeps them all.
	Subset *SubsetConfig `json:"subset,omitempty"`
}

// StrategyConfig chooses and tunes the strategy: a `strategy` block.
type StrategyConfig struct {
	// Kind is one of StrategyKinds().
	Kind string `json:"kind"`
	// ChoiceCount applies to least_connections and peak_ewma: N >= 2
	// compares N endpoints drawn at random (Envoy's and grpc-go's
	// least_request, tower's and Finagle's power of two choices), O(N)
	// instead of O(endpoints) per pick; N at least the number of
	// endpoints compares them all. Zero compares every endpoint for
	// least_connections and means DefaultPeakEWMAChoices for peak_ewma.
	ChoiceCount int `json:"choice_count,omitempty"`
	// Decay, DefaultRTT and FailurePenalty tune peak_ewma: how fast a
	// latency peak fades (the EWMA's time constant; default 10s), the
	// estimate of an endpoint without samples (default 30ms, Linkerd's),
	// and the least latency a failed call counts as (default 300ms), so
	// that an endpoint failing fast does not look fast.
	Decay          time.Duration `json:"decay,omitempty"`
	DefaultRTT     time.Duration `json:"default_rtt,omitempty"`
	FailurePenalty time.Duration `json:"failure_penalty,omitempty"`
	// ActiveRequestBias is how much calls in flight count. For
	// least_connections, as Envoy's least request: an endpoint's effective
	// weight is weight / (in flight + 1)^bias, and the highest wins. For
	// peak_ewma, the cost is estimate × (in flight + 1)^bias / weight.
	// nil means 1.0 for least_connections (Envoy's default) and
	// DefaultPeakEWMABias (0.5) for peak_ewma; 0 ignores load
	// (least_connections then follows the weights alone, peak_ewma the
	// estimates alone).
	ActiveRequestBias *float64 `json:"active_request_bias,omitempty"`
	// SlowStart, when set, ramps up endpoints that join or return; nil is
	// off.
	SlowStart *SlowStart `json:"slow_start,omitempty"`

	// MinRingSize and MaxRingSize size ring_hash's ring as gRFC A42 and
	// grpc-go do (zero: DefaultMinRingSize, DefaultMaxRingSize); TableSize
	// is maglev's table size, a prime (zero: DefaultMaglevTableSize).
	MinRingSize int `json:"min_ring_size,omitempty"`
	MaxRingSize int `json:"max_ring_size,omitempty"`
	TableSize   int `json:"table_size,omitempty"`
	// HashBalanceFactor, a percentage of at least 100, bounds the load of
	// ring_hash and maglev as Envoy's hash_balance_factor: no endpoint
	// takes a call while it has more than factor/100 × its weighted share
	// of the calls in flight; the key goes to the next endpoint with room.
	// Zero is off.
	HashBalanceFactor int `json:"hash_balance_factor,omitempty"`
	// HashKey says what of a call ring_hash and maglev hash; nil hashes
	// only what the call's context carries (WithHashKey, WithSession).
	HashKey *HashKey `json:"hash_key,omitempty"`
	// WeightedRoundRobin tunes weighted_round_robin; nil is gRFC A58's
	// defaults.
	WeightedRoundRobin *WeightedRoundRobinConfig `json:"weighted_round_robin,omitempty"`
}

// HashKey is a strategy's `hash_key` block: what of a call is hashed
// (see KeyedContext, through which the gRPC layer hands the balancer the
// call's metadata and method).
type HashKey struct {
	// Header names the request metadata to hash, as gRFC A76's
	// request_hash_header: its values joined with ",", as grpc-go does, so
	// that both pick the same endpoint.
	Header string `json:"header,omitempty"`
	// Method hashes the call's full method name too (alone when Header is
	// empty), so that one key's calls of different methods spread.
	Method bool `json:"method,omitempty"`
}

// MaxActiveRequestBias bounds active_request_bias.
const MaxActiveRequestBias = 10

// Defaults of peak_ewma.
const (
	DefaultDecay          = 10 * time.Second
	DefaultRTT            = 30 * time.Millisecond
	DefaultFailurePenalty = 300 * time.Millisecond
)

func (c StrategyConfig) validate() error {
	loadAware := c.Kind == LeastConnections || c.Kind == PeakEWMA
	hashing := c.Kind == RingHash || c.Kind == Maglev
	switch {
	case (c.MinRingSize != 0 || c.MaxRingSize != 0) && c.Kind != RingHash:
		return fmt.Errorf("min_ring_size and max_ring_size apply only to %s, not %s", RingHash, c.Kind)
	case c.TableSize != 0 && c.Kind != Maglev:
		return fmt.Errorf("table_size applies only to %s, not %s", Maglev, c.Kind)
	case (c.HashBalanceFactor != 0 || c.HashKey != nil) && !hashing:
		return fmt.Errorf("hash_balance_factor and hash_key apply only to %s and %s, not %s", RingHash, Maglev, c.Kind)
	case c.SlowStart != nil && c.Kind == WeightedRoundRobin:
		return fmt.Errorf("slow_start does not apply to %s: a new endpoint has the mean weight until its own reports count", c.Kind)
	case c.SlowStart != nil && hashing:
		return fmt.Errorf("slow_start does not apply to %s: a key's endpoint does not depend on how long it has served", c.Kind)
	}
	if hashing {
		if err := c.validateHashing(); err != nil {
			return err
		}
	}
	if c.WeightedRoundRobin != nil {
		if c.Kind != WeightedRoundRobin {
			return fmt.Errorf("weighted_round_robin's settings apply only to %s, not %s", WeightedRoundRobin, c.Kind)
		}
		if err := c.WeightedRoundRobin.validate(); err != nil {
			return err
		}
	}
	switch {
	case c.ChoiceCount != 0 && !loadAware:
		return fmt.Errorf("choice_count applies only to %s and %s, not %s", LeastConnections, PeakEWMA, c.Kind)
	case c.ChoiceCount == 1 || c.ChoiceCount < 0:
		return fmt.Errorf("choice_count must be 0 (compare every endpoint) or at least 2, not %d", c.ChoiceCount)
	case (c.Decay != 0 || c.DefaultRTT != 0 || c.FailurePenalty != 0) && c.Kind != PeakEWMA:
		return fmt.Errorf("decay, default_rtt and failure_penalty apply only to %s, not %s", PeakEWMA, c.Kind)
	case c.Decay < 0 || c.DefaultRTT < 0 || c.FailurePenalty < 0:
		return fmt.Errorf("decay, default_rtt and failure_penalty must not be negative")
	case c.SlowStart != nil && c.Kind == Random:
		return fmt.Errorf("slow_start applies to %s, %s, %s and %s, not %s", RoundRobin, Weighted, LeastConnections, PeakEWMA, c.Kind)
	case c.ActiveRequestBias != nil && !loadAware:
		return fmt.Errorf("active_request_bias applies only to %s and %s, not %s", LeastConnections, PeakEWMA, c.Kind)
	case c.ActiveRequestBias != nil && !(*c.ActiveRequestBias >= 0 && *c.ActiveRequestBias <= MaxActiveRequestBias):
		return fmt.Errorf("active_request_bias must be between 0 and %g, not %g", float64(MaxActiveRequestBias), *c.ActiveRequestBias)
	}
	if c.SlowStart != nil {
		return c.SlowStart.validate()
	}
	return nil
}

func (c StrategyConfig) validateHashing() error {
	minRing, maxRing := c.RingSizes()
	switch {
	case c.MinRingSize < 0 || c.MaxRingSize < 0:
		return fmt.Errorf("min_ring_size and max_ring_size must be positive")
	case minRing > MaxRingSize || maxRing > MaxRingSize:
		return fmt.Errorf("ring sizes are at most %d (8M, as Envoy's), not %d", MaxRingSize, max(minRing, maxRing))
	case minRing > maxRing:
		if c.MaxRingSize == 0 {
			return fmt.Errorf("min_ring_size %d is larger than the default max_ring_size %d (grpc-go's); raise max_ring_size with it", minRing, maxRing)
		}
		return fmt.Errorf("min_ring_size %d is larger than max_ring_size %d", minRing, maxRing)
	case c.TableSize < 0 || c.TableSize > MaxMaglevTableSize:
		return fmt.Errorf("table_size must be a prime up to %d, not %d", MaxMaglevTableSize, c.TableSize)
	case c.TableSize != 0 && !IsPrime(c.TableSize):
		return fmt.Errorf("table_size must be a prime (as Maglev needs; Envoy's default is %d), not %d", DefaultMaglevTableSize, c.TableSize)
	case c.HashBalanceFactor != 0 && c.HashBalanceFactor < 100:
		return fmt.Errorf("hash_balance_factor is a percentage of at least 100 (Envoy's bound), not %d", c.HashBalanceFactor)
	case c.HashKey != nil && c.HashKey.Header == "" && !c.HashKey.Method:
		return fmt.Errorf("hash_key needs a header to hash, the method, or both")
	case c.HashKey != nil && c.HashKey.Header != "":
		if err := CheckHashHeader(c.HashKey.Header); err != nil {
			return fmt.Errorf("hash_key header %q: %w", c.HashKey.Header, err)
		}
	}
	return nil
}

// CheckHashHeader reports whether name can be hashed as a call's key: a
// gRPC metadata key in lower case, not a binary one (whose values are
// bytes, not text) and not reserved by gRPC.
func CheckHashHeader(name string) error {
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("a metadata key has only lower-case letters, digits, '-', '_' and '.', not %q", r)
		}
	}
	switch {
	case strings.HasSuffix(name, "-bin"):
		return fmt.Errorf("binary metadata (a key ending in -bin) cannot be hashed as text")
	case strings.HasPrefix(name, "grpc-"):
		return fmt.Errorf("keys starting with grpc- are reserved for gRPC itself")
	}
	return nil
}

// RingSizes returns ring_hash's ring sizes, defaults filled in. A
// max_ring_size alone below the default minimum lowers the minimum too.
func (c StrategyConfig) RingSizes() (minSize, maxSize int) {
	minSize, maxSize = c.MinRingSize, c.MaxRingSize
	if maxSize == 0 {
		maxSize = DefaultMaxRingSize
	}
	if minSize == 0 {
		minSize = min(DefaultMinRingSize, maxSize)
	}
	return minSize, maxSize
}

// StickyConfig is a strategy's `sticky_session` block.
type StickyConfig struct {
	// Enabled binds a session id (see WithSession) to an endpoint for TTL,
	// renewed on every use.
	Enabled bool          `json:"enabled"`
	TTL     time.Duration `json:"ttl"`
	// Key names the request metadata that carries the session id when a
	// call's context has none from WithSession (see KeyedContext); empty
	// means only WithSession counts.
	Key string `json:"key,omitempty"`
}

// DefaultSessionKey is the metadata key that carries a sticky session id
// when a configuration does not name one.
const DefaultSessionKey = "session-id"

// DefaultConfig returns round robin without sticky sessions (5 minute
// sessions, keyed by "session-id", once enabled).
func DefaultConfig() Config {
	return Config{
		Strategy: StrategyConfig{Kind: RoundRobin},
		Sticky:   StickyConfig{TTL: 5 * time.Minute, Key: DefaultSessionKey},
	}
}

// Validate reports what a LoadBalancer could not run with.
func (c *Config) Validate() error { return c.validate() }

func (c *Config) validate() error {
	if !(c.PanicThreshold >= 0 && c.PanicThreshold <= 100) {
		return fmt.Errorf("panic threshold %g is not a percentage from 0 to 100", c.PanicThreshold)
	}
	if c.CircuitBreakers != nil {
		if err := c.CircuitBreakers.validate(); err != nil {
			return err
		}
	}
	if c.RateLimit != nil {
		if err := c.RateLimit.validate(); err != nil {
			return err
		}
	}
	if c.OutlierDetection != nil {
		if err := c.OutlierDetection.validate(); err != nil {
			return err
		}
	}
	if c.Locality != nil {
		if err := c.Locality.Validate(c.Strategy.Kind); err != nil {
			return err
		}
	}
	if c.Subset != nil {
		if err := c.Subset.validate(); err != nil {
			return err
		}
	}
	if c.Sticky.Enabled && (c.Strategy.Kind == RingHash || c.Strategy.Kind == Maglev) {
		return fmt.Errorf("%s maps each session to its endpoint by hashing, with no table to keep: drop sticky_session (the session id is hashed; a hash_key block names the metadata that carries it)", c.Strategy.Kind)
	}
	if c.Sticky.Enabled && c.Sticky.TTL <= 0 {
		return fmt.Errorf("sticky sessions need a positive session timeout, not %s", c.Sticky.TTL)
	}
	return nil
}

// LoadBalancerConfig is the original design's flat configuration, kept so
// that code written against it works unchanged. NewLoadBalancer reads
// Service, Strategy, ChoiceCount, StickySession and SessionTimeout; the
// health check and retry fields are the original design's settings for the
// health checker and the client (see rpc.NewHealthChecker and
// rpc.LoadBalancedClientConfig), which read them from their own configs.
type LoadBalancerConfig struct {
	Service string `json:"service,omitempty"`
	// Strategy is one of StrategyKinds().
	Strategy string `json:"strategy"`
	// ChoiceCount tunes least_connections; see StrategyOptions.
	ChoiceCount int `json:"choice_count,omitempty"`

	HealthCheckInterval time.Duration `json:"health_check_interval"`
	HealthCheckTimeout  time.Duration `json:"health_check_timeout"`
	UnhealthyThreshold  int           `json:"unhealthy_threshold"`
	HealthyThreshold    int           `json:"healthy_threshold"`

	MaxRetries      int           `json:"max_retries"`
	RetryDelay      time.Duration `json:"retry_delay"`
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

// Config returns the part of c that a LoadBalancer reads.
func (c *LoadBalancerConfig) Config() Config {
	return Config{
		Service:  c.Service,
		Strategy: StrategyConfig{Kind: c.Strategy, ChoiceCount: c.ChoiceCount},
		Sticky:   StickyConfig{Enabled: c.StickySession, TTL: c.SessionTimeout, Key: DefaultSessionKey},
	}
}

// OutcomeConfig is a service's `outcomes` block: which call results count
// against the endpoint that answered. Every other error is neutral: it says
// nothing about the endpoint (the caller's own mistake, a cancelled call).
type OutcomeConfig struct {
	// FailureCodes are the statuses the endpoint is blamed for; empty
	// means DefaultFailureCodes.
	FailureCodes statuscode.Set `json:"failure_codes"`
}

// DefaultFailureCodes are the statuses an endpoint is blamed for by
// default: it could not be reached or broke the connection (UNAVAILABLE),
// did not answer in time (DEADLINE_EXCEEDED), or failed on its side
// (UNKNOWN, INTERNAL, DATA_LOSS). Envoy's and grpc-go's outlier detection
// likewise count server errors and leave the caller's own alone.
var DefaultFailureCodes = statuscode.SetOf(statuscode.Unknown, statuscode.DeadlineExceeded,
	statuscode.Internal, statuscode.Unavailable, statuscode.DataLoss)

// Classify turns a call's final status into its outcome for the endpoint.
// cancelled reports that the caller gave up on the call (its context was
// cancelled), which says nothing about the endpoint whatever the status.
func (c OutcomeConfig) Classify(code statuscode.Code, cancelled bool) Outcome {
	failures := c.FailureCodes
	if failures == 0 {
		failures = DefaultFailureCodes
	}
	switch {
	case code == statuscode.OK:
		return Success
	case cancelled || code == statuscode.Canceled:
		return Neutral
	case failures.Has(code):
		return Failure
	}
	return Neutral
}

func (c *LoadBalancerConfig) validate() error {
	switch {
	case c.MaxRetries < 0:
		return fmt.Errorf("max retries %d is negative", c.MaxRetries)
	case c.RetryDelay < 0:
		return fmt.Errorf("retry delay %s is negative", c.RetryDelay)
	case c.UnhealthyThreshold < 0 || c.HealthyThreshold < 0:
		return fmt.Errorf("health thresholds must not be negative")
	}
	return nil
}
