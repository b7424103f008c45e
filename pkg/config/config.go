// Package config loads pvlb's HCL configuration: services, the strategies
// and health policies they use, and the discovery sources that find their
// endpoints. Every problem it finds is an hcl.Diagnostic with a source range,
// so the CLI can point at file:line:col and quote the line.
package config

import (
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/peervault/pvlb/pkg/latency"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/policy"
	"github.com/peervault/pvlb/pkg/statuscode"
)

// Config is a loaded configuration. The slices keep declaration order
// (files in name order, blocks in file order); the maps index them by name.
type Config struct {
	Services       []*Service
	Strategies     []*Strategy
	HealthPolicies []*HealthPolicy
	Discoveries    []*Discovery
	Plugins        []*Plugin
	Simulations    []*Simulation
	Scenarios      []*Scenario
	// PluginDir is the top-level plugin_dir, made absolute against the
	// file that sets it; empty when not set.
	PluginDir string

	plugins        map[string]*Plugin
	services       map[string]*Service
	strategies     map[string]*Strategy
	healthPolicies map[string]*HealthPolicy
	discoveries    map[string]*Discovery // by "kind.name"
	simulations    map[string]*Simulation
	scenarios      map[string]*Scenario
}

// named is a block with a name.
type named interface{ blockName() string }

func (s *Scenario) blockName() string { return s.Name }
func (s *Service) blockName() string  { return s.Name }
func (s *Strategy) blockName() string { return s.Name }

// namesOf lists blocks' names in declaration order.
func namesOf[T named](blocks []T) []string {
	names := make([]string, len(blocks))
	for i, b := range blocks {
		names[i] = b.blockName()
	}
	return names
}

// Scenario returns the `scenario "NAME"` block of that name, if any.
func (c *Config) Scenario(name string) (*Scenario, bool) {
	s, ok := c.scenarios[name]
	return s, ok
}

// ScenarioNames lists the scenarios in declaration order.
func (c *Config) ScenarioNames() []string { return namesOf(c.Scenarios) }

// Simulation returns the simulation block of the named service, if any.
func (c *Config) Simulation(service string) (*Simulation, bool) {
	s, ok := c.simulations[service]
	return s, ok
}

// Strategy returns the `strategy "NAME"` block of that name, if any.
func (c *Config) Strategy(name string) (*Strategy, bool) {
	s, ok := c.strategies[name]
	return s, ok
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
func (c *Config) ServiceNames() []string { return namesOf(c.Services) }

// StrategyNames lists the strategy blocks in declaration order.
func (c *Config) StrategyNames() []string { return namesOf(c.Strategies) }

// Strategy is a `strategy "name"` block: how a service picks endpoints.
type Strategy struct {
	Name string
	lb.StrategyConfig
	Sticky    lb.StickyConfig
	DeclRange hcl.Range
}

// HealthPolicy is a `health_policy "name"` block: how endpoints are checked
// with grpc.health.v1.
type HealthPolicy struct {
	Name string
	policy.HealthCheck
	DeclRange hcl.Range
}

// Discovery is a `discovery "kind" "name"` block. Static sources are built
// in: pvlb decodes them fully into Endpoints and no plugin runs. The body of
// any other kind is kept for its plugin to decode with its own schema.
type Discovery struct {
	Kind      string
	Name      string
	Endpoints []*Endpoint // static only, in written order
	Body      hcl.Body    // kinds other than static
	DeclRange hcl.Range
	KindRange hcl.Range
}

// Ref returns the reference other blocks use for it: discovery.KIND.NAME.
func (d *Discovery) Ref() string { return "discovery." + d.Kind + "." + d.Name }

// Endpoint is a static discovery source's `endpoint "id"` block: the
// endpoint as the balancer takes it, and where it was written.
type Endpoint struct {
	lb.EndpointSpec
	Address   string // as written, host:port
	DeclRange hcl.Range
}

// Simulation is a `simulation "SERVICE"` block: how `pvlb simulate` models
// the service's servers, whatever discovery finds them. It has no effect on
// real traffic.
type Simulation struct {
	Service string
	Servers []*SimulatedServer // in written order
	// CrossZoneLatency is added to an attempt that leaves its client's
	// zone (cross_zone_latency).
	CrossZoneLatency time.Duration
	DeclRange        hcl.Range
}

// SimulatedServer is a simulation's `server "PATTERN"` block. The pattern
// is an endpoint id or a shell pattern over ids (path.Match syntax, such as
// "db-*"); every block that matches an endpoint applies, in written order,
// a later one overriding what an earlier one set.
type SimulatedServer struct {
	Pattern   string
	Latency   *latency.Model // nil: not set here
	ErrorRate *float64
	Capacity  *int // concurrent requests served; 0 means unlimited
	// ErrorCode is the status of its failures (default INTERNAL).
	ErrorCode *statuscode.Code
	// ColdStart is how long the server answers slower after it starts
	// (comes back up or joins discovery, and, in a scenario step, at the
	// step's time): ColdStartSlow times slower at first (default
	// DefaultColdStartSlow), the factor falling linearly to 1 over it.
	ColdStart     *time.Duration
	ColdStartSlow *float64
	// Pushback is sent with the server's failures: a duration, or
	// PushbackNoRetry ("no_retry" in HCL).
	Pushback *time.Duration
	// CacheKeys is how many request keys (simulate --keys) the server
	// keeps in a least-recently-used cache; a request whose key it does
	// not hold is a miss and takes MissLatency instead of Latency.
	CacheKeys   *int
	MissLatency *latency.Model
	// Down, in a scenario, takes the server down (true) or brings it back;
	// Slow makes it that many times slower than it was; Discovered false
	// makes discovery stop reporting it (it leaves the service, its calls
	// in flight finish) and true reports it again (it joins).
	Down       *bool
	Slow       *float64
	Discovered *bool
	DeclRange  hcl.Range
}

// Behaviour is how a simulated server behaves: what a simulation's server
// blocks set and a scenario's steps change.
type Behaviour struct {
	Latency   latency.Model
	ErrorRate float64 // share of answers that fail with ErrorCode
	// ErrorCode is the status of its failures; zero means INTERNAL.
	ErrorCode statuscode.Code
	Capacity  int // requests served at once; more wait in a queue; 0 is unlimited
	// ColdStart and ColdStartSlow are as in SimulatedServer: the server
	// is ColdStartSlow times slower when it starts, for ColdStart.
	ColdStart     time.Duration
	ColdStartSlow float64
	// Pushback is what the server's failures say of retrying them (gRFC
	// A6's grpc-retry-pushback-ms): wait this long; PushbackNoRetry, do
	// not; zero, nothing.
	Pushback time.Duration
	// CacheKeys is the keys the server caches (0: no cache); a request
	// whose key is not cached takes MissLatency, when set.
	CacheKeys   int
	MissLatency *latency.Model
}

// PushbackNoRetry is a pushback that asks clients not to retry.
const PushbackNoRetry time.Duration = -1

// Scenario is a `scenario "NAME"` block: what happens to a service's
// servers over a simulated run, for pvlb simulate --scenario.
type Scenario struct {
	Name     string
	Service  string
	Requests int // zero: simulate's default, or what Duration gives
	// Duration, with an open loop, sends the requests the rate (and each
	// step's new rate from its time on) gives over it.
	Duration time.Duration
	RPS      float64 // open loop; zero with Concurrency zero: the default
	// Concurrency is closed loop's requests in flight.
	Concurrency int
	Steps       []*ScenarioStep // in time order
	DeclRange   hcl.Range
}

// ScenarioStep is a scenario's `at "TIME"` block: what changes then.
type ScenarioStep struct {
	At time.Duration
	// RPS, when not zero, is the open loop's request rate from At on, or
	// from At+Ramp on when Ramp is set: the rate moves linearly from what
	// it was to RPS over Ramp.
	RPS  float64
	Ramp time.Duration
	// Concurrency, when not zero, is the closed loop's requests in flight
	// from At on.
	Concurrency int
	Servers     []*SimulatedServer // latency, error_rate and down
	DeclRange   hcl.Range
}

// Service is a `service "name"` block, with its references resolved.
type Service struct {
	Name      string
	Discovery *Discovery
	Strategy  *Strategy     // the default strategy when not set
	Health    *HealthPolicy // the default policy when not set
	Retry     policy.Retry
	Client    policy.Client
	Outcomes  lb.OutcomeConfig
	// PanicThreshold is the service's panic_threshold, a percentage; zero
	// is off. See lb.Config.
	PanicThreshold float64
	// OutlierDetection is the service's outlier_detection block; nil
	// when it has none.
	OutlierDetection *lb.OutlierDetection
	// CircuitBreakers and RateLimit are its circuit_breakers and
	// rate_limit blocks; nil when it has none.
	CircuitBreakers *lb.CircuitBreakers
	RateLimit       *lb.RateLimit
	// Hedging is its hedging block; nil when it has none.
	Hedging *policy.Hedging
	// Locality is its locality block and Subset its subset block; nil
	// when it has none.
	Locality  *lb.Locality
	Subset    *lb.SubsetConfig
	DeclRange hcl.Range
}

func defaultStrategy() *Strategy {
	d := lb.DefaultConfig()
	return &Strategy{Name: "default", StrategyConfig: d.Strategy, Sticky: d.Sticky}
}

func defaultHealthPolicy() *HealthPolicy {
	return &HealthPolicy{Name: "default", HealthCheck: policy.DefaultHealthCheck()}
}

// BalancerConfig returns what the service's LoadBalancer reads.
func (s *Service) BalancerConfig() lb.Config {
	return lb.Config{Service: s.Name, Strategy: s.Strategy.StrategyConfig, Sticky: s.Strategy.Sticky, Outcomes: s.Outcomes, PanicThreshold: s.PanicThreshold,
		OutlierDetection: s.OutlierDetection, CircuitBreakers: s.CircuitBreakers, RateLimit: s.RateLimit, Locality: s.Locality, Subset: s.Subset}
}

// Specs returns a static source's endpoints as the balancer takes them, in
// written order.
func (d *Discovery) Specs() []lb.EndpointSpec {
	specs := make([]lb.EndpointSpec, len(d.Endpoints))
	for i, e := range d.Endpoints {
		specs[i] = e.EndpointSpec
	}
	return specs
}
