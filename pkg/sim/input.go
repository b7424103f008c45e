package sim

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/peervault/pvlb/pkg/config"
	"github.com/peervault/pvlb/pkg/latency"
	"github.com/peervault/pvlb/pkg/lb"
)

// Overrides are what a user changes for one run, beyond the configuration:
// the traffic, and per-server behaviour written [SERVER=]VALUE, where a
// value without SERVER applies to every server.
type Overrides struct {
	Requests    int
	RPS         float64 // zero, without Concurrency, means 1000
	Concurrency int
	Sessions    int
	Keys        int     // request keys (see Config.Keys)
	KeySkew     float64 // Zipf exponent of the keys; 0 is uniform
	Clients     int     // independent client balancers; 0 means one
	Seed        uint64
	// NoLocality and NoSubset drop the service's locality and subset
	// blocks.
	NoLocality, NoSubset bool
	// Strategy replaces the service's strategy with a strategy block of
	// the configuration by its name, or with a kind and its defaults.
	Strategy string
	// Scenario names a scenario block of the configuration: its load
	// (unless the other fields set one) and what happens to the servers
	// when. Requests zero means the scenario's, else 10,000.
	Scenario  string
	Latency   []string // latency models, as latency.Parse reads them
	ErrorRate []string // 0 to 1
	Capacity  []string // concurrent requests; 0 is unlimited
	Down      []string // SERVER@FROM[-TO]
}

// InputError is a problem with what the user asked for; its text names the
// setting or flag.
type InputError struct{ msg string }

func (e *InputError) Error() string { return e.msg }

func inputErrorf(format string, args ...any) error {
	return &InputError{msg: fmt.Sprintf(format, args...)}
}

// Assemble builds a run of svc over the endpoints its discovery found: the
// service's balancer, health and retry settings, each server's behaviour
// from cfg's simulation block for the service, then the overrides. Servers
// keep discovery's order (a static list's is the written one). Every
// problem is an *InputError.
func Assemble(cfg *config.Config, svc *config.Service, discovered []lb.EndpointSpec, o Overrides) (*Config, error) {
	out := &Config{
		Balancer: svc.BalancerConfig(), Health: svc.Health.HealthCheck, Retry: svc.Retry, Hedging: svc.Hedging,
		Requests: o.Requests, Sessions: o.Sessions, Clients: o.Clients, Seed: o.Seed, RPS: o.RPS, Concurrency: o.Concurrency,
		Keys: o.Keys, KeySkew: o.KeySkew,
	}
	if svc.Strategy.Name != "default" {
		out.StrategyName = svc.Strategy.Name
	}
	if l := svc.Locality; l != nil {
		// The report counts what leaves the clients' zones, with or
		// without the block.
		out.LocalZone, out.ClientZones = l.LocalZone, l.ClientZones
	}
	if o.NoSubset {
		if out.Balancer.Subset == nil {
			return nil, inputErrorf("--no-subset: service %q has no subset block to leave out", svc.Name)
		}
		out.Balancer.Subset = nil
	}
	if o.NoLocality {
		if out.Balancer.Locality == nil {
			return nil, inputErrorf("--no-locality: service %q has no locality block to leave out", svc.Name)
		}
		out.Balancer.Locality = nil
	}
	if o.Strategy != "" {
		switch block, ok := cfg.Strategy(o.Strategy); {
		case ok:
			out.Balancer.Strategy, out.Balancer.Sticky = block.StrategyConfig, block.Sticky
			out.StrategyName = block.Name
		case slices.Contains(lb.StrategyKinds(), o.Strategy):
			if o.Strategy != out.Balancer.Strategy.Kind {
				out.Balancer.Strategy = lb.StrategyConfig{Kind: o.Strategy}
				out.StrategyName = ""
			}
		default:
			return nil, inputErrorf("--strategy %q is neither a strategy block of the configuration (%s) nor a strategy kind (%s)",
				o.Strategy, orNone(cfg.StrategyNames()), strings.Join(lb.StrategyKinds(), ", "))
		}
	}
	var scenario *config.Scenario
	if o.Scenario != "" {
		sc, err := FindScenario(cfg, o.Scenario)
		switch {
		case err != nil:
			return nil, err
		case sc.Service != svc.Name:
			return nil, inputErrorf("scenario %q is of service %q, not %q", sc.Name, sc.Service, svc.Name)
		}
		scenario = sc
		if o.Requests == 0 {
			out.Requests = sc.Requests
		}
		if o.RPS == 0 && o.Concurrency == 0 {
			out.RPS, out.Concurrency = sc.RPS, sc.Concurrency
			o.RPS, o.Concurrency = sc.RPS, sc.Concurrency
		}
	}
	if out.Requests == 0 {
		out.Requests = DefaultRequests
	}
	switch {
	case out.Requests < 1:
		return nil, inputErrorf("--requests must be at least 1, not %d", out.Requests)
	case o.RPS < 0 || math.IsNaN(o.RPS) || math.IsInf(o.RPS, 0):
		return nil, inputErrorf("--rps must be positive, not %v", o.RPS)
	case o.Concurrency < 0:
		return nil, inputErrorf("--concurrency must be positive, not %d", o.Concurrency)
	case o.RPS > 0 && o.Concurrency > 0:
		return nil, inputErrorf("--rps and --concurrency exclude each other: choose open loop or closed loop")
	case o.Sessions < 0:
		return nil, inputErrorf("--sessions must not be negative, not %d", o.Sessions)
	case o.Keys < 0 || o.Keys > MaxKeys:
		return nil, inputErrorf("--keys must be from 1 to %d, not %d", MaxKeys, o.Keys)
	case o.KeySkew != 0 && !(o.KeySkew > 1 && o.KeySkew <= 100):
		return nil, inputErrorf("--key-skew is a Zipf exponent above 1 (1.1 is mild, 2 steep; at most 100), not %g", o.KeySkew)
	case o.KeySkew != 0 && o.Keys == 0:
		return nil, inputErrorf("--key-skew needs --keys, the number of keys to draw from")
	case o.Clients < 0 || o.Clients > MaxClients:
		return nil, inputErrorf("--clients must be from 1 to %d, not %d", MaxClients, o.Clients)
	case o.RPS == 0 && o.Concurrency == 0:
		out.RPS = 1000
	}
	if o.Sessions > 0 && !out.Balancer.Sticky.Enabled {
		return nil, inputErrorf("--sessions needs sticky sessions, but strategy %q of service %q has none; add a sticky_session block", svc.Strategy.Name, svc.Name)
	}
	if len(discovered) == 0 {
		return nil, inputErrorf("service %q: its %s discovery found no instances to simulate", svc.Name, svc.Discovery.Kind)
	}
	index := make(map[string]int, len(discovered))
	ids := make([]string, 0, len(discovered))
	for _, spec := range discovered {
		index[spec.ID] = len(out.Servers)
		ids = append(ids, spec.ID)
		out.Servers = append(out.Servers, Server{EndpointSpec: spec, Behaviour: config.Behaviour{Latency: latency.Default}})
	}
	if simulation, ok := cfg.Simulation(svc.Name); ok {
		out.CrossZoneLatency = simulation.CrossZoneLatency
		for i := range out.Servers {
			for _, b := range simulation.Servers {
				if b.Matches(out.Servers[i].ID) {
					b.ApplyTo(&out.Servers[i].Behaviour)
				}
			}
		}
	}
	targets := func(flag, target string) ([]int, error) {
		if target == "" {
			all := make([]int, len(ids))
			for i := range all {
				all[i] = i
			}
			return all, nil
		}
		i, ok := index[target]
		if !ok {
			return nil, inputErrorf("--%s: service %q has no endpoint %q (endpoints: %s)", flag, svc.Name, target, strings.Join(ids, ", "))
		}
		return []int{i}, nil
	}
	// override applies one [SERVER=]VALUE flag to the servers it names.
	override := func(flag string, values []string, apply func(s *Server, value string) error) error {
		for _, v := range values {
			target, value := splitTarget(v)
			idx, err := targets(flag, target)
			if err != nil {
				return err
			}
			for _, i := range idx {
				if err := apply(&out.Servers[i], value); err != nil {
					return inputErrorf("--%s %s: %v", flag, v, err)
				}
			}
		}
		return nil
	}
	if err := override("latency", o.Latency, func(s *Server, value string) (err error) {
		s.Latency, err = latency.Parse(value)
		return err
	}); err != nil {
		return nil, err
	}
	if err := override("error-rate", o.ErrorRate, func(s *Server, value string) error {
		rate, err := strconv.ParseFloat(value, 64)
		if err != nil || rate < 0 || rate > 1 || math.IsNaN(rate) {
			return fmt.Errorf("want a number from 0 to 1, like server2=0.1")
		}
		s.ErrorRate = rate
		return nil
	}); err != nil {
		return nil, err
	}
	if err := override("capacity", o.Capacity, func(s *Server, value string) error {
		n, err := strconv.Atoi(value)
		if err != nil || n < 0 {
			return fmt.Errorf("want a whole number of concurrent requests, like server1=64 (0 is unlimited)")
		}
		s.Capacity = n
		return nil
	}); err != nil {
		return nil, err
	}
	if scenario != nil {
		applyScenario(out, scenario)
		if o.Requests == 0 && scenario.Duration > 0 && out.RPS > 0 {
			out.Requests = requestsOver(out.RPS, out.RateChanges, scenario.Duration)
			if out.Requests > MaxRequests {
				return nil, inputErrorf("scenario %q sends %d requests over its %s, more than a run holds (%d): shorten its duration or lower its rates", scenario.Name, out.Requests, scenario.Duration, MaxRequests)
			}
		}
	}
	for _, v := range o.Down {
		outage, err := ParseOutage(v)
		if err != nil {
			return nil, err
		}
		if _, err := targets("down", outage.Server); err != nil {
			return nil, err
		}
		out.Outages = append(out.Outages, outage)
	}
	return out, nil
}

// splitTarget splits "server1=value" into its parts; a bare value has no
// target. A latency model's "(" marks where a value without target starts.
// DefaultRequests is a run's size when neither the command nor the
// scenario gives one.
const DefaultRequests = 10_000

// applyScenario turns a scenario's steps into the run's timed changes:
// rate changes, each server's behaviour from each step on, discovery's
// removals and returns, cold starts, and outages from each down = true to
// the down = false that ends it (or the end of the run).
func applyScenario(out *Config, sc *config.Scenario) {
	out.Scenario = sc.Name
	downSince := map[string]time.Duration{}
	behaviour := map[string]config.Behaviour{}
	for _, srv := range out.Servers {
		behaviour[srv.ID] = srv.Behaviour
	}
	for _, step := range sc.Steps {
		if step.RPS > 0 {
			out.RateChanges = append(out.RateChanges, RateChange{At: step.At, RPS: step.RPS, Ramp: step.Ramp})
		}
		if step.Concurrency > 0 {
			out.ConcurrencyChanges = append(out.ConcurrencyChanges, ConcurrencyChange{At: step.At, Concurrency: step.Concurrency})
		}
		for _, b := range step.Servers {
			for _, srv := range out.Servers {
				if !b.Matches(srv.ID) {
					continue
				}
				ch := Change{Server: srv.ID, At: step.At, Discovered: b.Discovered}
				if b.SetsBehaviour() {
					now := behaviour[srv.ID]
					b.ApplyTo(&now)
					behaviour[srv.ID] = now
					ch.Behaviour = &now
				}
				// Coming back up or joining starts a cold start anyway.
				ch.ColdStart = b.ColdStart != nil && b.Down == nil && b.Discovered == nil
				if ch.Behaviour != nil || ch.Discovered != nil || ch.ColdStart {
					out.Changes = append(out.Changes, ch)
				}
				if b.Down != nil {
					since, isDown := downSince[srv.ID]
					switch {
					case *b.Down && !isDown:
						downSince[srv.ID] = step.At
					case !*b.Down && isDown:
						delete(downSince, srv.ID)
						if step.At > since {
							out.Outages = append(out.Outages, Outage{Server: srv.ID, From: since, To: step.At})
						}
					}
				}
			}
		}
	}
	for id, since := range downSince {
		out.Outages = append(out.Outages, Outage{Server: id, From: since, To: forever})
	}
	slices.SortFunc(out.Outages, func(a, b Outage) int { return strings.Compare(a.Server, b.Server) })
}

// forever ends an outage that nothing ends.
const forever = 1 << 62

// FindScenario returns the scenario block named by --scenario, or an
// *InputError that lists the scenarios there are.
func FindScenario(cfg *config.Config, name string) (*config.Scenario, error) {
	sc, ok := cfg.Scenario(name)
	if !ok {
		return nil, inputErrorf("--scenario %q is not a scenario of the configuration (%s)", name, orNone(cfg.ScenarioNames()))
	}
	return sc, nil
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "it has none"
	}
	return strings.Join(names, ", ")
}

func splitTarget(s string) (target, value string) {
	eq := strings.IndexByte(s, '=')
	if eq < 0 || strings.ContainsRune(s[:eq], '(') {
		return "", s
	}
	return s[:eq], s[eq+1:]
}

// ParseOutage reads SERVER@FROM-TO or SERVER@FROM.
func ParseOutage(s string) (Outage, error) {
	bad := func(why string) (Outage, error) {
		return Outage{}, inputErrorf("--down %s: %s; write SERVER@FROM-TO, like server2@2s-5s, or SERVER@FROM to stay down", s, why)
	}
	server, window, ok := strings.Cut(s, "@")
	if !ok || server == "" || window == "" {
		return bad("missing server or time")
	}
	fromStr, toStr, hasTo := strings.Cut(window, "-")
	from, err := time.ParseDuration(fromStr)
	if err != nil || from < 0 {
		return bad(fmt.Sprintf("%q is not a time like 2s", fromStr))
	}
	to := time.Duration(math.MaxInt64)
	if hasTo {
		if to, err = time.ParseDuration(toStr); err != nil {
			return bad(fmt.Sprintf("%q is not a time like 5s", toStr))
		}
		if to <= from {
			return bad("it must end after it starts")
		}
	}
	return Outage{Server: server, From: from, To: to}, nil
}
