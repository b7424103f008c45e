// Package config loads pvlb's HCL configuration: services, the strategies
// and health policies they use, and the discovery sources that find their
// endpoints. Every problem it finds is an hcl.Diagnostic with a source range,
// so the CLI can point at file:line:col and quote the line.
package config

import (
	"time"

	"github.com/hashicorp/hcl/v2"
	"google.golang.org/grpc/codes"

	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/sim"
)

// Config is a loaded configuration. The slices keep declaration order
// (files in name order, blocks in file order); the maps index them by name.
type Config struct {
	Services       []*Service
	Strategies     []*Strategy
	HealthPolicies []*HealthPolicy
	Discoveries    []*Discovery
	Plugins        []*Plugin
	// PluginDir is the top-level plugin_dir, made absolute against the
	// file that sets it; empty when not set.
	PluginDir string

	plugins        map[string]*Plugin
	services       map[string]*Service
	strategies     map[string]*Strategy
	healthPolicies map[string]*HealthPolicy
	discoveries    map[string]*Discovery // by "kind.name"
}

// Plugin returns the `plugin "KIND"` block for kind, if any.
func (c *Config) Plugin(kind string) (*Plugin, bool) {
	p, ok := c.plugins[kind]
	return p, ok
}

// Plugin is a `plugin "KIND"` block: settings for the plugin of a
// discovery kind.
type Plugin struct {
	Kind string
	// SHA256 pins the plugin executable's checksum (lower-case hex); pvlb
	// refuses to start an executable that does not match.
	SHA256    string
	DeclRange hcl.Range
}

// Service returns the service with the given name.
func (c *Config) Service(name string) (*Service, bool) {
	s, ok := c.services[name]
	return s, ok
}

// ServiceNames lists the services in declaration order.
func (c *Config) ServiceNames() []string {
	names := make([]string, len(c.Services))
	for i, s := range c.Services {
		names[i] = s.Name
	}
	return names
}

// Strategy is a `strategy "name"` block: how a service picks endpoints.
type Strategy struct {
	Name        string
	Kind        string // one of lb.StrategyKinds()
	ChoiceCount int    // least_connections only; see lb.StrategyOptions
	Sticky      StickySession
	DeclRange   hcl.Range
}

// StickySession is a strategy's `sticky_session` block.
type StickySession struct {
	Enabled bool
	TTL     time.Duration
	// Key is the request metadata key that carries the session id.
	Key string
}

// HealthPolicy is a `health_policy "name"` block: how endpoints are checked
// with grpc.health.v1.
type HealthPolicy struct {
	Name               string
	Interval           time.Duration
	Timeout            time.Duration
	UnhealthyThreshold int
	HealthyThreshold   int
	// Service is the name sent in the health check request; empty asks
	// for the server's overall health.
	Service   string
	DeclRange hcl.Range
}

// Discovery is a `discovery "kind" "name"` block. Static sources are decoded
// fully into Endpoints; the body of any other kind is kept for its plugin to
// decode with its own schema.
type Discovery struct {
	Kind      string
	Name      string
	Endpoints []*Endpoint // static only
	Body      hcl.Body    // kinds other than static
	DeclRange hcl.Range
	KindRange hcl.Range
}

// Ref returns the reference other blocks use for it: discovery.KIND.NAME.
func (d *Discovery) Ref() string { return "discovery." + d.Kind + "." + d.Name }

// Endpoint is a static discovery source's `endpoint "name"` block.
type Endpoint struct {
	Name     string
	Address  string // as written, host:port
	Host     string
	Port     int
	Weight   int
	Zone     string
	Metadata map[string]string
	// Simulate holds what `pvlb simulate` assumes of this server; nil
	// when the block has none.
	Simulate  *EndpointSimulation
	DeclRange hcl.Range
}

// EndpointSimulation is an endpoint's `simulate` block.
type EndpointSimulation struct {
	Latency   *sim.LatencyModel // nil: the simulator's default
	ErrorRate float64
	Capacity  int // concurrent requests served; 0 means unlimited
}

// Service is a `service "name"` block, with its references resolved.
type Service struct {
	Name      string
	Discovery *Discovery
	Strategy  *Strategy     // the default strategy when not set
	Health    *HealthPolicy // the default policy when not set
	Retry     Retry
	Client    Client
	DeclRange hcl.Range
}

// Retry is a service's `retry` block.
type Retry struct {
	MaxRetries      int
	Delay           time.Duration
	FailoverTimeout time.Duration
	// RetryableCodes lists the status codes retried; nil means
	// lb.DefaultRetryableCodes.
	RetryableCodes []codes.Code
}

// Client is a service's `client` block: the gRPC connection settings.
type Client struct {
	ConnectionTimeout time.Duration
	KeepAliveInterval time.Duration
	KeepAliveTimeout  time.Duration
	MaxReceiveSize    int
	MaxSendSize       int
	UserAgent         string
	TLS               *lb.TLSConfig // nil: plaintext
}

// Defaults for omitted blocks and attributes, taken from the original
// design's DefaultLoadBalancerConfig and DefaultLoadBalancedClientConfig.
func defaultStrategy() *Strategy {
	d := lb.DefaultLoadBalancerConfig()
	return &Strategy{
		Name: "default",
		Kind: d.Strategy,
		Sticky: StickySession{
			Enabled: d.StickySession,
			TTL:     d.SessionTimeout,
			Key:     DefaultSessionKey,
		},
	}
}

// DefaultSessionKey is the metadata key that carries a sticky session id
// when a strategy does not name one.
const DefaultSessionKey = "session-id"

func defaultHealthPolicy() *HealthPolicy {
	d := lb.DefaultLoadBalancerConfig()
	return &HealthPolicy{
		Name:               "default",
		Interval:           d.HealthCheckInterval,
		Timeout:            d.HealthCheckTimeout,
		UnhealthyThreshold: d.UnhealthyThreshold,
		HealthyThreshold:   d.HealthyThreshold,
	}
}

func defaultRetry() Retry {
	d := lb.DefaultLoadBalancedClientConfig()
	return Retry{MaxRetries: d.MaxRetries, Delay: d.RetryDelay, FailoverTimeout: d.FailoverTimeout}
}

func defaultClient() Client {
	d := lb.DefaultLoadBalancedClientConfig()
	return Client{
		ConnectionTimeout: d.ConnectionTimeout,
		KeepAliveInterval: d.KeepAliveInterval,
		KeepAliveTimeout:  d.KeepAliveTimeout,
		MaxReceiveSize:    d.MaxReceiveSize,
		MaxSendSize:       d.MaxSendSize,
		UserAgent:         d.UserAgent,
	}
}

// LoadBalancerConfig returns the lb configuration this service runs with.
func (s *Service) LoadBalancerConfig() *lb.LoadBalancerConfig {
	return &lb.LoadBalancerConfig{
		Service:             s.Name,
		Strategy:            s.Strategy.Kind,
		ChoiceCount:         s.Strategy.ChoiceCount,
		HealthCheckInterval: s.Health.Interval,
		HealthCheckTimeout:  s.Health.Timeout,
		UnhealthyThreshold:  s.Health.UnhealthyThreshold,
		HealthyThreshold:    s.Health.HealthyThreshold,
		MaxRetries:          s.Retry.MaxRetries,
		RetryDelay:          s.Retry.Delay,
		FailoverTimeout:     s.Retry.FailoverTimeout,
		StickySession:       s.Strategy.Sticky.Enabled,
		SessionTimeout:      s.Strategy.Sticky.TTL,
	}
}

// ClientConfig returns the gRPC client configuration of this service.
func (s *Service) ClientConfig() *lb.LoadBalancedClientConfig {
	c := &lb.LoadBalancedClientConfig{
		MaxRetries:        s.Retry.MaxRetries,
		RetryDelay:        s.Retry.Delay,
		FailoverTimeout:   s.Retry.FailoverTimeout,
		ConnectionTimeout: s.Client.ConnectionTimeout,
		KeepAliveInterval: s.Client.KeepAliveInterval,
		KeepAliveTimeout:  s.Client.KeepAliveTimeout,
		MaxReceiveSize:    s.Client.MaxReceiveSize,
		MaxSendSize:       s.Client.MaxSendSize,
		UserAgent:         s.Client.UserAgent,
		TLS:               s.Client.TLS,
		RetryableCodes:    s.Retry.RetryableCodes,
	}
	if s.Strategy.Sticky.Enabled {
		c.SessionMetadataKey = s.Strategy.Sticky.Key
	}
	return c
}
