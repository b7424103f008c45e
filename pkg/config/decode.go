package config

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/peervault/pvlb/pkg/latency"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/policy"
	"github.com/peervault/pvlb/pkg/statuscode"
	"github.com/peervault/pvlb/pkg/tlsfiles"
)

var fileSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "plugin_dir"}},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "service", LabelNames: []string{"name"}},
		{Type: "strategy", LabelNames: []string{"name"}},
		{Type: "health_policy", LabelNames: []string{"name"}},
		{Type: "discovery", LabelNames: []string{"kind", "name"}},
		{Type: "plugin", LabelNames: []string{"kind"}},
		{Type: "simulation", LabelNames: []string{"service"}},
		{Type: "scenario", LabelNames: []string{"name"}},
	},
}

var pluginSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "sha256"}},
}

// StaticKind is the built-in discovery kind: pvlb decodes its endpoint list
// itself and starts no plugin for it. Every other kind's body is decoded
// with its plugin's schema.
const StaticKind = "static"

// decoder collects declarations from every file, then resolves references,
// so blocks may refer to blocks declared later or in other files.
type decoder struct {
	cfg         *Config
	ctx         *hcl.EvalContext
	diags       hcl.Diagnostics
	services    []*hcl.Block // decoded after everything they may refer to
	simulations []*hcl.Block // decoded after the services they name
	scenarios   []*hcl.Block // likewise
}

func decode(bodies []hcl.Body) (*Config, hcl.Diagnostics) {
	d := &decoder{
		cfg: &Config{
			services:       map[string]*Service{},
			strategies:     map[string]*Strategy{},
			healthPolicies: map[string]*HealthPolicy{},
			discoveries:    map[string]*Discovery{},
			plugins:        map[string]*Plugin{},
			simulations:    map[string]*Simulation{},
			scenarios:      map[string]*Scenario{},
		},
		ctx: EvalContext(),
	}
	for _, body := range bodies {
		content := d.content(body, fileSchema)
		if attr, ok := content.Attributes["plugin_dir"]; ok {
			d.decodePluginDir(attr)
		}
		for _, block := range content.Blocks {
			switch block.Type {
			case "plugin":
				d.decodePluginBlock(block)
			case "strategy":
				d.decodeStrategyBlock(block)
			case "health_policy":
				d.decodeHealthPolicyBlock(block)
			case "discovery":
				d.decodeDiscoveryBlock(block)
			case "service":
				d.services = append(d.services, block)
			case "simulation":
				d.simulations = append(d.simulations, block)
			case "scenario":
				d.scenarios = append(d.scenarios, block)
			}
		}
	}
	for _, block := range d.services {
		d.decodeServiceBlock(block)
	}
	for _, block := range d.simulations {
		d.decodeSimulationBlock(block)
	}
	for _, block := range d.scenarios {
		d.decodeScenarioBlock(block)
	}
	return d.cfg, d.diags
}

func (d *decoder) content(body hcl.Body, schema *hcl.BodySchema) *hcl.BodyContent {
	content, diags := body.Content(schema)
	explainUnsupported(diags, schema)
	d.diags = append(d.diags, diags...)
	return content
}

func (d *decoder) attrs(content *hcl.BodyContent) *attrs {
	return &attrs{m: content.Attributes, ctx: d.ctx}
}

func (d *decoder) merge(a *attrs) { d.diags = append(d.diags, a.diags...) }

func (d *decoder) errorf(rng hcl.Range, summary, format string, args ...any) {
	d.diags = append(d.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: fmt.Sprintf(format, args...), Subject: rng.Ptr()})
}

func (d *decoder) warnf(rng hcl.Range, summary, format string, args ...any) {
	d.diags = append(d.diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: summary, Detail: fmt.Sprintf(format, args...), Subject: rng.Ptr()})
}

// declared is what every named block type has: where it was declared.
type declared interface{ declRange() hcl.Range }

func (s *Strategy) declRange() hcl.Range     { return s.DeclRange }
func (h *HealthPolicy) declRange() hcl.Range { return h.DeclRange }
func (d *Discovery) declRange() hcl.Range    { return d.DeclRange }
func (e *Endpoint) declRange() hcl.Range     { return e.DeclRange }
func (s *Service) declRange() hcl.Range      { return s.DeclRange }
func (p *Plugin) declRange() hcl.Range       { return p.DeclRange }
func (s *Simulation) declRange() hcl.Range   { return s.DeclRange }
func (s *Scenario) declRange() hcl.Range     { return s.DeclRange }

// declare records v under key in table and list, or reports a duplicate
// that cites the first declaration, as Packer does.
func declare[T declared](d *decoder, what, key string, v T, table map[string]T, list *[]T) {
	if first, ok := table[key]; ok {
		d.errorf(v.declRange(), "Duplicate "+what, "A %s named %q was already declared at %s. Each %s needs a name of its own.",
			what, key, first.declRange(), what)
		return
	}
	table[key] = v
	*list = append(*list, v)
}

// singleBlock returns the only block of a type, reporting any extra ones.
func (d *decoder) singleBlock(blocks hcl.Blocks, typ, parent string) *hcl.Block {
	found := blocks.OfType(typ)
	if len(found) == 0 {
		return nil
	}
	for _, extra := range found[1:] {
		d.errorf(extra.DefRange, "Duplicate "+typ+" block", "A %s takes at most one %s block; the first is at %s.", parent, typ, found[0].DefRange)
	}
	return found[0]
}

// validName checks a block label: a name that can be referenced.
func (d *decoder) validName(block *hcl.Block, i int) bool {
	name := block.Labels[i]
	if !hclsyntax.ValidIdentifier(name) {
		d.errorf(block.LabelRanges[i], "Invalid name", "%s is not a valid name: use letters, digits, underscores and dashes, starting with a letter.", quoteShort(name))
		return false
	}
	return true
}

// --- strategy ---

var strategySchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "kind", Required: true}, {Name: "choice_count"},
		{Name: "decay"}, {Name: "default_rtt"}, {Name: "failure_penalty"},
		{Name: "active_request_bias"},
		{Name: "min_ring_size"}, {Name: "max_ring_size"}, {Name: "table_size"}, {Name: "hash_balance_factor"},
		{Name: "blackout_period"}, {Name: "weight_expiration_period"}, {Name: "weight_update_period"},
		{Name: "error_utilization_penalty"}, {Name: "enable_oob_load_report"}, {Name: "oob_reporting_period"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "sticky_session"}, {Type: "slow_start"}, {Type: "hash_key"}},
}

var hashKeySchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "header"}, {Name: "method"}},
}

// hashingSettings are the settings only ring_hash and maglev read, and
// which of them reads each.
var hashingSettings = []struct {
	name  string
	kinds []string
}{
	{"min_ring_size", []string{lb.RingHash}}, {"max_ring_size", []string{lb.RingHash}},
	{"table_size", []string{lb.Maglev}}, {"hash_balance_factor", []string{lb.RingHash, lb.Maglev}},
}

var slowStartSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "window", Required: true}, {Name: "aggression"}, {Name: "min_weight_percent"}},
}

var stickySchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "enabled"}, {Name: "ttl"}, {Name: "key"}},
}

func (d *decoder) decodeStrategyBlock(block *hcl.Block) {
	if !d.validName(block, 0) {
		return
	}
	s := defaultStrategy()
	s.Name, s.DeclRange = block.Labels[0], block.DefRange
	content := d.content(block.Body, strategySchema)
	a := d.attrs(content)
	if attr, ok := a.decode("kind", &s.Kind); ok && !slices.Contains(lb.StrategyKinds(), s.Kind) {
		a.errorf(attr.Expr.Range(), "Unknown strategy kind", "%s is not a strategy kind. Known kinds: %s.%s",
			a.shown("kind", s.Kind), strings.Join(lb.StrategyKinds(), ", "), a.didYouMean("kind", s.Kind, lb.StrategyKinds()))
	}
	if attr, ok := content.Attributes["choice_count"]; ok {
		a.int("choice_count", 0, 100, &s.ChoiceCount)
		switch {
		case s.Kind != lb.LeastConnections && s.Kind != lb.PeakEWMA:
			a.errorf(attr.Range, "Setting not used by this strategy", "choice_count applies only to kind = %q and %q; strategy %q is %q.", lb.LeastConnections, lb.PeakEWMA, s.Name, s.Kind)
		case s.ChoiceCount == 1:
			a.errorf(attr.Expr.Range(), "Invalid choice_count", "choice_count is at least 2 (compare that many random endpoints), or 0 to compare every endpoint (least_connections), not 1.")
		case s.ChoiceCount == 0 && s.Kind == lb.PeakEWMA:
			a.errorf(attr.Expr.Range(), "Invalid choice_count", "peak_ewma compares at least 2 endpoints (the default); to compare every endpoint, set choice_count to the number of endpoints or more.")
		}
	}
	for _, name := range []string{"decay", "default_rtt", "failure_penalty"} {
		if attr, ok := content.Attributes[name]; ok && s.Kind != lb.PeakEWMA {
			a.errorf(attr.Range, "Setting not used by this strategy", "%s applies only to kind = %q; strategy %q is %q.", name, lb.PeakEWMA, s.Name, s.Kind)
		}
	}
	if attr, ok := content.Attributes["active_request_bias"]; ok {
		if s.Kind != lb.LeastConnections && s.Kind != lb.PeakEWMA {
			a.errorf(attr.Range, "Setting not used by this strategy", "active_request_bias applies only to kind = %q and %q; strategy %q is %q.", lb.LeastConnections, lb.PeakEWMA, s.Name, s.Kind)
		}
		bias := 1.0
		a.float("active_request_bias", 0, lb.MaxActiveRequestBias, &bias)
		s.ActiveRequestBias = &bias
	}
	a.duration("decay", false, &s.Decay)
	a.duration("default_rtt", false, &s.DefaultRTT)
	a.duration("failure_penalty", false, &s.FailurePenalty)
	d.decodeHashing(s, content, a)
	d.decodeWeightedRoundRobin(s, content, a)
	if sb := d.singleBlock(content.Blocks, "slow_start", "strategy"); sb != nil {
		ss := lb.DefaultSlowStart(0)
		a := d.attrs(d.content(sb.Body, slowStartSchema))
		a.duration("window", false, &ss.Window)
		a.float("aggression", 0.01, 100, &ss.Aggression)
		a.float("min_weight_percent", 0, 100, &ss.MinWeightPercent)
		d.merge(a)
		if s.Kind == lb.Random || s.Kind == lb.WeightedRoundRobin || hashes(s.Kind) {
			d.errorf(sb.DefRange, "Setting not used by this strategy", "slow_start applies to kinds round_robin, weighted, least_connections and peak_ewma; strategy %q is %q.", s.Name, s.Kind)
		}
		if ss.Window > 0 {
			s.SlowStart = &ss
		}
	}
	if sb := d.singleBlock(content.Blocks, "sticky_session", "strategy"); sb != nil {
		sc := d.content(sb.Body, stickySchema)
		sa := d.attrs(sc)
		s.Sticky.Enabled = true // a sticky_session block means stickiness unless it says otherwise
		sa.bool("enabled", &s.Sticky.Enabled)
		sa.duration("ttl", false, &s.Sticky.TTL)
		sa.string("key", &s.Sticky.Key)
		if attr, ok := sc.Attributes["key"]; ok && s.Sticky.Key == "" {
			sa.errorf(attr.Expr.Range(), "Empty session key", "key names the request metadata that carries the session id; it cannot be empty.")
		}
		if hashes(s.Kind) && s.Sticky.Enabled {
			sa.errorf(sb.DefRange, "Sticky sessions with a hashing strategy", "%s sends every call with the same key to the same endpoint, with no table to keep: remove sticky_session. A session id from the Go API (lb.WithSession) is hashed as the key; to hash one from request metadata, add hash_key { header = %q }.", s.Kind, s.Sticky.Key)
		}
		d.merge(sa)
	}
	d.merge(a)
	declare(d, "strategy", s.Name, s, d.cfg.strategies, &d.cfg.Strategies)
}

func hashes(kind string) bool { return kind == lb.RingHash || kind == lb.Maglev }

// decodeHashing decodes ring_hash's and maglev's settings into s.
func (d *decoder) decodeHashing(s *Strategy, content *hcl.BodyContent, a *attrs) {
	for _, hs := range hashingSettings {
		if attr, ok := content.Attributes[hs.name]; ok && !slices.Contains(hs.kinds, s.Kind) {
			kinds := fmt.Sprintf("%q", hs.kinds[0])
			if len(hs.kinds) == 2 {
				kinds += fmt.Sprintf(" and %q", hs.kinds[1])
			}
			a.errorf(attr.Range, "Setting not used by this strategy", "%s applies only to kind = %s; strategy %q is %q.", hs.name, kinds, s.Name, s.Kind)
		}
	}
	a.int("min_ring_size", 1, lb.MaxRingSize, &s.MinRingSize)
	a.int("max_ring_size", 1, lb.MaxRingSize, &s.MaxRingSize)
	if attr, ok := content.Attributes["min_ring_size"]; ok && s.MinRingSize != 0 {
		if _, maxRing := s.RingSizes(); s.MinRingSize > maxRing {
			hint := ""
			if s.MaxRingSize == 0 {
				hint = fmt.Sprintf(" max_ring_size defaults to %d, grpc-go's; set it too.", lb.DefaultMaxRingSize)
			}
			a.errorf(attr.Expr.Range(), "Ring sizes out of order", "min_ring_size (%d) must not be larger than max_ring_size (%d).%s", s.MinRingSize, maxRing, hint)
		}
	}
	a.intHint("table_size", 2, lb.MaxMaglevTableSize, fmt.Sprintf("Envoy's default is %d.", lb.DefaultMaglevTableSize), &s.TableSize)
	if attr, ok := content.Attributes["table_size"]; ok && s.TableSize != 0 && !lb.IsPrime(s.TableSize) {
		a.errorf(attr.Expr.Range(), "Invalid table_size", "table_size must be a prime, as Maglev's permutations need, not %d. Envoy's default is %d; other primes: 65537, 131071, 524287, 1048573.", s.TableSize, lb.DefaultMaglevTableSize)
	}
	a.intHint("hash_balance_factor", 100, math.MaxInt32, "It is a percentage of the mean load: 125 lets an endpoint take up to 1.25 × its share of the calls in flight.", &s.HashBalanceFactor)
	hb := d.singleBlock(content.Blocks, "hash_key", "strategy")
	if hb == nil {
		return
	}
	if !hashes(s.Kind) {
		d.errorf(hb.DefRange, "Setting not used by this strategy", "hash_key applies only to kind = %q and %q; strategy %q is %q.", lb.RingHash, lb.Maglev, s.Name, s.Kind)
	}
	hc := d.content(hb.Body, hashKeySchema)
	ha := d.attrs(hc)
	key := &lb.HashKey{}
	ha.string("header", &key.Header)
	ha.bool("method", &key.Method)
	if attr, ok := hc.Attributes["header"]; ok {
		key.Header = strings.ToLower(key.Header)
		if err := lb.CheckHashHeader(key.Header); err != nil {
			ha.errorf(attr.Expr.Range(), "Invalid hash_key header", "header = %s: %s.", ha.shown("header", key.Header), err)
		}
	}
	if key.Header == "" && !key.Method {
		ha.errorf(hb.DefRange, "Nothing to hash", "hash_key needs a header to hash (header = \"x-user-id\"), the method (method = true), or both.")
	}
	d.merge(ha)
	s.HashKey = key
}

// weightedRoundRobinSettings are the settings only weighted_round_robin
// reads.
var weightedRoundRobinSettings = []string{"blackout_period", "weight_expiration_period", "weight_update_period",
	"error_utilization_penalty", "enable_oob_load_report", "oob_reporting_period"}

// decodeWeightedRoundRobin decodes weighted_round_robin's settings into s.
func (d *decoder) decodeWeightedRoundRobin(s *Strategy, content *hcl.BodyContent, a *attrs) {
	set := false
	for _, name := range weightedRoundRobinSettings {
		if attr, ok := content.Attributes[name]; ok {
			set = true
			if s.Kind != lb.WeightedRoundRobin {
				a.errorf(attr.Range, "Setting not used by this strategy", "%s applies only to kind = %q; strategy %q is %q.", name, lb.WeightedRoundRobin, s.Name, s.Kind)
			}
		}
	}
	if !set {
		return
	}
	w := &lb.WeightedRoundRobinConfig{BlackoutPeriod: lb.DefaultBlackoutPeriod}
	a.duration("blackout_period", true, &w.BlackoutPeriod)
	a.duration("weight_expiration_period", false, &w.WeightExpirationPeriod)
	a.duration("weight_update_period", false, &w.WeightUpdatePeriod)
	if attr, ok := content.Attributes["weight_update_period"]; ok && w.WeightUpdatePeriod > 0 && w.WeightUpdatePeriod < lb.MinWeightUpdatePeriod {
		a.errorf(attr.Expr.Range(), "Invalid weight_update_period", "weight_update_period must be at least %s (grpc-go's floor), not %s.", lb.MinWeightUpdatePeriod, w.WeightUpdatePeriod)
	}
	if _, ok := content.Attributes["error_utilization_penalty"]; ok {
		penalty := lb.DefaultErrorUtilizationPenalty
		a.float("error_utilization_penalty", 0, 1000, &penalty)
		w.ErrorUtilizationPenalty = &penalty
	}
	a.bool("enable_oob_load_report", &w.EnableOOBLoadReport)
	a.duration("oob_reporting_period", false, &w.OOBReportingPeriod)
	if attr, ok := content.Attributes["oob_reporting_period"]; ok && !w.EnableOOBLoadReport {
		a.errorf(attr.Range, "Out-of-band period without out-of-band reports", "oob_reporting_period is how often each server sends its load on its own stream; it needs enable_oob_load_report = true (without it, load comes in every call's trailers).")
	}
	if s.Kind == lb.WeightedRoundRobin {
		s.WeightedRoundRobin = w
	}
}

// --- health_policy ---

var healthSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "interval"}, {Name: "timeout"},
		{Name: "unhealthy_threshold"}, {Name: "healthy_threshold"},
		{Name: "service"},
	},
}

func (d *decoder) decodeHealthPolicyBlock(block *hcl.Block) {
	if !d.validName(block, 0) {
		return
	}
	h := defaultHealthPolicy()
	h.Name, h.DeclRange = block.Labels[0], block.DefRange
	content := d.content(block.Body, healthSchema)
	a := d.attrs(content)
	a.duration("interval", false, &h.Interval)
	a.duration("timeout", false, &h.Timeout)
	a.int("unhealthy_threshold", 1, 100, &h.UnhealthyThreshold)
	a.int("healthy_threshold", 1, 100, &h.HealthyThreshold)
	a.string("service", &h.Service)
	if h.Timeout >= h.Interval {
		rng := block.DefRange
		if attr, ok := content.Attributes["timeout"]; ok {
			rng = attr.Expr.Range()
		}
		a.errorf(rng, "Health check timeout too long", "timeout (%s) must be shorter than interval (%s), or checks would overlap.", h.Timeout, h.Interval)
	}
	d.merge(a)
	declare(d, "health_policy", h.Name, h, d.cfg.healthPolicies, &d.cfg.HealthPolicies)
}

// --- discovery ---

var staticSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{{Type: "endpoint", LabelNames: []string{"name"}}},
}

var endpointSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "address", Required: true}, {Name: "weight"}, {Name: "zone"}, {Name: "metadata"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "simulate"}},
}

func (d *decoder) decodeDiscoveryBlock(block *hcl.Block) {
	kind := block.Labels[0]
	if !d.validName(block, 0) || !d.validName(block, 1) {
		return
	}
	disc := &Discovery{Kind: kind, Name: block.Labels[1], DeclRange: block.DefRange, KindRange: block.LabelRanges[0]}
	if kind == StaticKind {
		d.decodeStaticBody(disc, block)
	} else {
		disc.Body = block.Body
	}
	declare(d, "discovery source", disc.Ref(), disc, d.cfg.discoveries, &d.cfg.Discoveries)
}

func (d *decoder) decodeStaticBody(disc *Discovery, block *hcl.Block) {
	content := d.content(block.Body, staticSchema)
	seen := map[string]*Endpoint{}
	byAddress := map[string]*Endpoint{}
	for _, eb := range content.Blocks.OfType("endpoint") {
		if d.validName(eb, 0) {
			ep := d.decodeEndpointBlock(eb)
			declare(d, "endpoint", ep.ID, ep, seen, &disc.Endpoints)
			if ep.Host == "" {
				continue
			}
			key := strings.ToLower(net.JoinHostPort(ep.Host, strconv.Itoa(ep.Port)))
			if first, dup := byAddress[key]; dup {
				d.warnf(ep.DeclRange, "Duplicate address", "Endpoints %q and %q both point at %s, so that server takes two shares of the traffic. Remove one, or give one server one endpoint with a weight.", first.ID, ep.ID, key)
			} else {
				byAddress[key] = ep
			}
		}
	}
	if len(content.Blocks.OfType("endpoint")) == 0 {
		d.errorf(block.DefRange, "No endpoints", "Static discovery %q lists no servers. Add at least one block such as:\n  endpoint \"server1\" { address = \"127.0.0.1:50051\" }", disc.Name)
	}
}

func (d *decoder) decodeEndpointBlock(block *hcl.Block) *Endpoint {
	ep := &Endpoint{EndpointSpec: lb.EndpointSpec{ID: block.Labels[0], Weight: 1}, DeclRange: block.DefRange}
	content := d.content(block.Body, endpointSchema)
	a := d.attrs(content)
	if attr, ok := a.decode("address", &ep.Address); ok {
		host, port, err := splitAddress(ep.Address)
		if err != nil {
			why := err.Error()
			if a.sensitive["address"] {
				why = "it is not host:port" // the error may quote a part of it, such as the port
			}
			a.errorf(attr.Expr.Range(), "Invalid address", "address %s: %s. Write host:port, like \"127.0.0.1:50051\", \"peervault-1.internal:443\" or \"[::1]:50051\".",
				a.shown("address", ep.Address), why)
		}
		ep.Host, ep.Port = host, port
	}
	a.intHint("weight", 1, lb.MaxWeight, "To take a server out of rotation, remove its endpoint block.", &ep.Weight)
	a.string("zone", &ep.Zone)
	a.stringMap("metadata", &ep.Metadata)
	if attr, ok := content.Attributes["metadata"]; ok {
		for _, k := range slices.Sorted(maps.Keys(ep.Metadata)) {
			if !validMetadataKey(k) {
				a.errorf(attr.Expr.Range(), "Invalid metadata key", "%s is not a gRPC metadata key: use lowercase letters, digits, dashes, underscores and dots%s.", quoteShort(k), lowercaseHint(k))
			}
		}
	}
	d.merge(a)
	for _, sb := range content.Blocks.OfType("simulate") {
		d.errorf(sb.DefRange, "Simulation settings have moved", "How a server behaves in pvlb simulate is set in a top-level simulation block, which applies to endpoints from any discovery kind:\n  simulation \"SERVICE\" {\n    server %q { latency = \"lognormal(10ms, 40ms)\" }\n  }", ep.ID)
	}
	return ep
}

// --- simulation ---

var simulationSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "cross_zone_latency"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "server", LabelNames: []string{"pattern"}}},
}

var simulatedServerSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "latency"}, {Name: "error_rate"}, {Name: "error_code"}, {Name: "capacity"}, {Name: "cold_start"}, {Name: "cold_start_slow"}, {Name: "pushback"},
		{Name: "cache_keys"}, {Name: "miss_latency"}},
}

func (d *decoder) decodeSimulationBlock(block *hcl.Block) {
	sim := &Simulation{Service: block.Labels[0], DeclRange: block.DefRange}
	svc, ok := d.cfg.services[sim.Service]
	if !ok {
		known := d.cfg.ServiceNames()
		d.errorf(block.LabelRanges[0], "Simulation of an undeclared service", "No service named %q is declared.%s%s", sim.Service, didYouMean(sim.Service, known), listKnown("service", known))
	}
	content := d.content(block.Body, simulationSchema)
	a := d.attrs(content)
	a.duration("cross_zone_latency", true, &sim.CrossZoneLatency)
	d.merge(a)
	for _, sb := range content.Blocks.OfType("server") {
		srv := d.decodeSimulatedServer(sb)
		if srv == nil {
			continue
		}
		sim.Servers = append(sim.Servers, srv)
		if svc != nil && svc.Discovery != nil && svc.Discovery.Kind == StaticKind && !srv.matchesAny(svc.Discovery.Endpoints) {
			ids := make([]string, len(svc.Discovery.Endpoints))
			for i, ep := range svc.Discovery.Endpoints {
				ids[i] = ep.ID
			}
			d.warnf(sb.LabelRanges[0], "Server pattern matches no endpoint", "%q matches none of service %q's endpoints (%s), so it has no effect.%s", srv.Pattern, sim.Service, strings.Join(ids, ", "), didYouMean(srv.Pattern, ids))
		}
	}
	declare(d, "simulation of service", sim.Service, sim, d.cfg.simulations, &d.cfg.Simulations)
}

func (d *decoder) decodeSimulatedServer(block *hcl.Block) *SimulatedServer {
	return d.decodeServerBehaviour(block, simulatedServerSchema)
}

// decodeServerBehaviour reads a server "PATTERN" block of a simulation,
// or of a scenario's at block (whose schema has down, not capacity).
func (d *decoder) decodeServerBehaviour(block *hcl.Block, schema *hcl.BodySchema) *SimulatedServer {
	s := &SimulatedServer{Pattern: block.Labels[0], DeclRange: block.DefRange}
	if _, err := path.Match(s.Pattern, ""); err != nil || s.Pattern == "" {
		d.errorf(block.LabelRanges[0], "Invalid server pattern", "%q is neither an endpoint id nor a valid pattern. Write an id like \"server3\", or a pattern like \"db-*\" or \"server[12]\".", s.Pattern)
		return nil
	}
	content := d.content(block.Body, schema)
	a := d.attrs(content)
	var model string
	if attr, ok := a.decode("latency", &model); ok {
		m, err := latency.Parse(model)
		if err != nil {
			a.errorf(attr.Expr.Range(), "Invalid latency model", "%s.", a.scrub("latency", model, err.Error()))
		} else {
			s.Latency = &m
		}
	}
	if _, ok := content.Attributes["error_rate"]; ok {
		var rate float64
		a.float("error_rate", 0, 1, &rate)
		s.ErrorRate = &rate
	}
	if _, ok := content.Attributes["capacity"]; ok {
		var capacity int
		a.int("capacity", 0, 1<<20, &capacity)
		s.Capacity = &capacity
	}
	if _, ok := content.Attributes["down"]; ok {
		var down bool
		a.bool("down", &down)
		s.Down = &down
	}
	if _, ok := content.Attributes["slow"]; ok {
		var f float64
		a.float("slow", 0.001, 1000, &f)
		s.Slow = &f
	}
	if _, ok := content.Attributes["discovered"]; ok {
		var discovered bool
		a.bool("discovered", &discovered)
		s.Discovered = &discovered
	}
	if _, ok := content.Attributes["cold_start"]; ok {
		var d time.Duration
		a.duration("cold_start", false, &d)
		s.ColdStart = &d
	}
	if attr, ok := content.Attributes["cold_start_slow"]; ok {
		var f float64
		a.float("cold_start_slow", 1, 1000, &f)
		s.ColdStartSlow = &f
		if content.Attributes["cold_start"] == nil {
			a.errorf(attr.Range, "Cold start without a length", "cold_start_slow is how much slower the server is when a cold start begins; set cold_start too, how long it lasts, like cold_start = \"30s\".")
		}
	}
	if _, ok := content.Attributes["cache_keys"]; ok {
		var n int
		a.int("cache_keys", 1, MaxCacheKeys, &n)
		s.CacheKeys = &n
	}
	if attr, ok := a.decode("miss_latency", &model); ok {
		m, err := latency.Parse(model)
		if err != nil {
			a.errorf(attr.Expr.Range(), "Invalid latency model", "%s.", a.scrub("miss_latency", model, err.Error()))
		} else {
			s.MissLatency = &m
		}
		if content.Attributes["cache_keys"] == nil {
			a.errorf(attr.Range, "Miss latency without a cache", "miss_latency is how long a request whose key is not in the server's cache takes; set cache_keys too, how many keys the server caches, like cache_keys = 10000.")
		}
	}
	var pushback string
	if attr, ok := a.decode("pushback", &pushback); ok {
		if pushback == "no_retry" {
			p := PushbackNoRetry
			s.Pushback = &p
		} else if d, err := time.ParseDuration(pushback); err == nil && d > 0 {
			s.Pushback = &d
		} else {
			a.errorf(attr.Expr.Range(), "Invalid pushback", "pushback is what the server's failures say of retrying (gRPC's grpc-retry-pushback-ms): a wait such as \"300ms\", or \"no_retry\"; not %s.", a.shown("pushback", pushback))
		}
	}
	var codeName string
	if attr, ok := a.decode("error_code", &codeName); ok {
		code, known := statuscode.Parse(codeName)
		names := statuscode.Names()[1:]
		switch {
		case !known:
			a.errorf(attr.Expr.Range(), "Unknown status code", "%s is not a gRPC status code.%s Known codes: %s.",
				a.shown("error_code", codeName), a.didYouMean("error_code", strings.ToUpper(codeName), names), strings.Join(names, ", "))
		case code == statuscode.OK:
			a.errorf(attr.Expr.Range(), "Invalid status code", "OK is success; a failure needs another code.")
		default:
			s.ErrorCode = &code
		}
	}
	d.merge(a)
	return s
}

// --- scenario ---

var scenarioSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "service", Required: true}, {Name: "requests"}, {Name: "duration"}, {Name: "rps"}, {Name: "concurrency"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "at", LabelNames: []string{"time"}}},
}

var scenarioStepSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "rps"}, {Name: "ramp"}, {Name: "concurrency"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "server", LabelNames: []string{"pattern"}}},
}

var scenarioServerSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "latency"}, {Name: "slow"}, {Name: "error_rate"}, {Name: "error_code"}, {Name: "down"}, {Name: "discovered"}, {Name: "cold_start"}, {Name: "cold_start_slow"}, {Name: "pushback"}},
}

func (d *decoder) decodeScenarioBlock(block *hcl.Block) {
	if !d.validName(block, 0) {
		return
	}
	sc := &Scenario{Name: block.Labels[0], DeclRange: block.DefRange}
	content := d.content(block.Body, scenarioSchema)
	a := d.attrs(content)
	var svc *Service
	if attr, ok := a.decode("service", &sc.Service); ok {
		var known bool
		if svc, known = d.cfg.services[sc.Service]; !known {
			names := d.cfg.ServiceNames()
			a.errorf(attr.Expr.Range(), "Scenario of an undeclared service", "No service named %s is declared.%s%s", quoteShort(sc.Service), didYouMean(sc.Service, names), listKnown("service", names))
		}
	}
	a.int("requests", 1, MaxRequests, &sc.Requests)
	if _, ok := content.Attributes["rps"]; ok {
		a.float("rps", 0.001, 10_000_000, &sc.RPS)
	}
	a.int("concurrency", 1, MaxConcurrency, &sc.Concurrency)
	if rps, conc := content.Attributes["rps"], content.Attributes["concurrency"]; rps != nil && conc != nil {
		a.errorf(conc.Range, "Conflicting load", "Set rps (open loop) or concurrency (closed loop), not both.")
	}
	if attr, ok := content.Attributes["duration"]; ok {
		a.duration("duration", false, &sc.Duration)
		switch {
		case content.Attributes["requests"] != nil:
			a.errorf(attr.Range, "Conflicting length", "Set requests or duration, not both: a duration sends the requests the scenario's rate gives over it.")
		case content.Attributes["rps"] == nil:
			a.errorf(attr.Range, "Duration without a rate", "A duration needs rps (an open loop): the run sends rps × duration requests, with each step's rps from its time on.")
		}
	}
	d.merge(a)
	down, gone := map[string]bool{}, map[string]bool{}
	var last time.Duration
	for _, sb := range content.Blocks.OfType("at") {
		at, err := time.ParseDuration(sb.Labels[0])
		if err != nil || at < 0 {
			d.errorf(sb.LabelRanges[0], "Invalid time", "%s is not a time from the start of the run: write a duration like \"30s\" or \"1m30s\".", quoteShort(sb.Labels[0]))
			continue
		}
		if at < last {
			d.errorf(sb.LabelRanges[0], "Steps out of order", "This step at %s comes after one at %s: write a scenario's at blocks in time order.", at, last)
		}
		last = at
		step := &ScenarioStep{At: at, DeclRange: sb.DefRange}
		stepContent := d.content(sb.Body, scenarioStepSchema)
		sa := d.attrs(stepContent)
		if attr, ok := stepContent.Attributes["rps"]; ok {
			sa.float("rps", 0.001, 10_000_000, &step.RPS)
			if sc.Concurrency > 0 {
				sa.errorf(attr.Range, "Rate in a closed loop", "A scenario with concurrency keeps that many requests in flight; a step's rps needs an open loop: set rps at the scenario's top instead of concurrency.")
			}
		}
		if attr, ok := stepContent.Attributes["concurrency"]; ok {
			sa.int("concurrency", 1, MaxConcurrency, &step.Concurrency)
			if sc.Concurrency == 0 {
				sa.errorf(attr.Range, "Concurrency in an open loop", "A step's concurrency changes a closed loop's requests in flight; this scenario is an open loop (rps). Set concurrency at the scenario's top instead of rps, or change the rate with a step's rps.")
			}
		}
		if attr, ok := stepContent.Attributes["ramp"]; ok {
			sa.duration("ramp", false, &step.Ramp)
			if stepContent.Attributes["rps"] == nil {
				sa.errorf(attr.Range, "Ramp without a rate", "ramp is how long the offered load takes to move to this step's rps; set rps too, like rps = 5000.")
			}
		}
		d.merge(sa)
		for _, srvBlock := range stepContent.Blocks.OfType("server") {
			srv := d.decodeServerBehaviour(srvBlock, scenarioServerSchema)
			if srv == nil {
				continue
			}
			if srv.Down != nil {
				if !*srv.Down && !down[srv.Pattern] {
					d.errorf(srvBlock.DefRange, "Server is not down", "down = false brings back a server that an earlier step took down with down = true; %q is not down at %s.", srv.Pattern, at)
				}
				down[srv.Pattern] = *srv.Down
			}
			if srv.Discovered != nil {
				if *srv.Discovered && !gone[srv.Pattern] {
					d.errorf(srvBlock.DefRange, "Server is already discovered", "discovered = true brings back a server that an earlier step removed with discovered = false; %q is still discovered at %s. To have a server join mid-run, remove it at \"0s\" first.", srv.Pattern, at)
				}
				gone[srv.Pattern] = !*srv.Discovered
			}
			step.Servers = append(step.Servers, srv)
			if svc != nil && svc.Discovery != nil && svc.Discovery.Kind == StaticKind && !srv.matchesAny(svc.Discovery.Endpoints) {
				d.warnf(srvBlock.LabelRanges[0], "Server pattern matches no endpoint", "%q matches none of service %q's endpoints, so this has no effect.", srv.Pattern, sc.Service)
			}
		}
		sc.Steps = append(sc.Steps, step)
	}
	declare(d, "scenario", sc.Name, sc, d.cfg.scenarios, &d.cfg.Scenarios)
}

// MaxRequests and MaxConcurrency bound a simulated run, from a scenario or
// from the command's flags: about two minutes and a few gigabytes at most.
const (
	MaxRequests    = 100_000_000
	MaxConcurrency = 1_000_000
)

// Matches reports whether the block applies to the endpoint id.
func (s *SimulatedServer) Matches(id string) bool {
	ok, _ := path.Match(s.Pattern, id)
	return ok
}

// SetsBehaviour reports whether the block sets how the server behaves, as
// opposed to only taking it down, or out of discovery, or back.
func (s *SimulatedServer) SetsBehaviour() bool {
	return s.Latency != nil || s.Slow != nil || s.ErrorRate != nil || s.ErrorCode != nil || s.Capacity != nil || s.ColdStart != nil || s.ColdStartSlow != nil || s.Pushback != nil ||
		s.CacheKeys != nil || s.MissLatency != nil
}

// ApplyTo sets what the block sets, leaving the rest as it is.
func (s *SimulatedServer) ApplyTo(b *Behaviour) {
	if s.Latency != nil {
		b.Latency = *s.Latency
	}
	if s.Slow != nil {
		b.Latency = b.Latency.Scale(*s.Slow)
	}
	if s.ErrorRate != nil {
		b.ErrorRate = *s.ErrorRate
	}
	if s.ErrorCode != nil {
		b.ErrorCode = *s.ErrorCode
	}
	if s.Capacity != nil {
		b.Capacity = *s.Capacity
	}
	if s.ColdStart != nil {
		b.ColdStart, b.ColdStartSlow = *s.ColdStart, DefaultColdStartSlow
	}
	if s.ColdStartSlow != nil {
		b.ColdStartSlow = *s.ColdStartSlow
	}
	if s.Pushback != nil {
		b.Pushback = *s.Pushback
	}
	if s.CacheKeys != nil {
		b.CacheKeys = *s.CacheKeys
	}
	if s.MissLatency != nil {
		b.MissLatency = s.MissLatency
	}
}

// MaxCacheKeys bounds a simulated server's cache (see Behaviour).
const MaxCacheKeys = 1 << 24

// DefaultColdStartSlow is how many times slower a server is when a cold
// start begins, unless cold_start_slow says.
const DefaultColdStartSlow = 10.0

func (s *SimulatedServer) matchesAny(eps []*Endpoint) bool {
	for _, ep := range eps {
		if s.Matches(ep.ID) {
			return true
		}
	}
	return false
}

// splitAddress parses host:port, requiring a host and a port in 1-65535.
func splitAddress(addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		if strings.Contains(err.Error(), "missing port") {
			return "", 0, fmt.Errorf("no port")
		}
		return "", 0, fmt.Errorf("not host:port")
	}
	if host == "" {
		return "", 0, fmt.Errorf("no host")
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || !lb.ValidPort(port) {
		return "", 0, fmt.Errorf("port %q is not a number from 1 to %d", portStr, lb.MaxPort)
	}
	return host, port, nil
}

// --- plugins ---

// decodePluginDir reads plugin_dir, relative to the file that sets it.
func (d *decoder) decodePluginDir(attr *hcl.Attribute) {
	a := &attrs{m: hcl.Attributes{attr.Name: attr}, ctx: d.ctx}
	var dir string
	a.string("plugin_dir", &dir)
	d.merge(a)
	if dir == "" {
		return
	}
	if d.cfg.PluginDir != "" {
		d.errorf(attr.NameRange, "Duplicate plugin_dir", "plugin_dir is already set to %q; set it once.", d.cfg.PluginDir)
		return
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(filepath.Dir(attr.Range.Filename), dir)
	}
	d.cfg.PluginDir = dir
}

// decodePluginBlock reads `plugin "KIND" { sha256 = "..." }`.
func (d *decoder) decodePluginBlock(block *hcl.Block) {
	if !d.validName(block, 0) {
		return
	}
	p := &Plugin{Kind: block.Labels[0], DeclRange: block.DefRange}
	if p.Kind == StaticKind {
		d.errorf(block.LabelRanges[0], "No plugin to configure", "Static discovery is built into pvlb; it runs no plugin, so there is nothing to pin or set. Remove this block.")
		return
	}
	content := d.content(block.Body, pluginSchema)
	a := d.attrs(content)
	if attr, ok := a.decode("sha256", &p.SHA256); ok {
		p.SHA256 = strings.ToLower(strings.TrimSpace(p.SHA256))
		if len(p.SHA256) != 64 || strings.Trim(p.SHA256, "0123456789abcdef") != "" {
			a.errorf(attr.Expr.Range(), "Invalid checksum", "sha256 must be 64 hexadecimal digits, as `sha256sum pvlb-discovery-%s` prints.", p.Kind)
		}
	}
	d.merge(a)
	declare(d, "plugin", p.Kind, p, d.cfg.plugins, &d.cfg.Plugins)
}

// --- service ---

var serviceSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "discovery"}, {Name: "strategy"}, {Name: "health"}, {Name: "panic_threshold"}},
	Blocks: []hcl.BlockHeaderSchema{{Type: "retry"}, {Type: "client"}, {Type: "outcomes"}, {Type: "outlier_detection"},
		{Type: "circuit_breakers"}, {Type: "rate_limit"}, {Type: "hedging"}, {Type: "locality"}, {Type: "subset"}},
}

var subsetSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "size", Required: true}, {Name: "client_index"}},
}

var localitySchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "mode"}, {Name: "local_zone"}, {Name: "min_cluster_size"}, {Name: "client_zones"},
		{Name: "priorities"}, {Name: "overprovisioning_factor"},
	},
}

var outlierSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "interval"}, {Name: "base_ejection_time"}, {Name: "max_ejection_time"},
		{Name: "max_ejection_percent"}, {Name: "consecutive_failures"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "success_rate"}, {Type: "failure_percentage"}},
}

var successRateSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "stdev_factor"}, {Name: "enforcement_percentage"}, {Name: "minimum_hosts"}, {Name: "request_volume"}},
}

var failurePercentageSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "threshold"}, {Name: "enforcement_percentage"}, {Name: "minimum_hosts"}, {Name: "request_volume"}},
}

var circuitBreakersSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "max_requests"}, {Name: "max_requests_per_endpoint"}, {Name: "max_pending"}},
}

var hedgingSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "max_attempts"}, {Name: "delay"}, {Name: "non_fatal_codes"}, {Name: "methods", Required: true}},
}

var rateLimitSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "requests_per_second", Required: true}, {Name: "burst"}},
}

var outcomesSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "failure_codes"}},
}

var retrySchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "max_retries"}, {Name: "delay"}, {Name: "initial_backoff"}, {Name: "backoff_multiplier"}, {Name: "max_backoff"},
		{Name: "failover_timeout"}, {Name: "per_try_timeout"}, {Name: "retryable_codes"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "budget"}, {Type: "throttling"}},
}

var retryBudgetSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "enabled"}, {Name: "percent"}, {Name: "min_retries_per_second"}, {Name: "ttl"}},
}

var retryThrottlingSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "max_tokens", Required: true}, {Name: "token_ratio", Required: true}},
}

var tlsSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "ca_file"}, {Name: "cert_file"}, {Name: "key_file"}, {Name: "server_name"}},
}

var clientSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "connection_timeout"}, {Name: "keepalive_interval"}, {Name: "keepalive_timeout"},
		{Name: "max_receive_size"}, {Name: "max_send_size"}, {Name: "user_agent"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "tls"}},
}

func (d *decoder) decodeServiceBlock(block *hcl.Block) {
	if !d.validName(block, 0) {
		return
	}
	s := &Service{
		Name:      block.Labels[0],
		Strategy:  defaultStrategy(),
		Health:    defaultHealthPolicy(),
		Retry:     policy.DefaultRetry(),
		Client:    policy.DefaultClient(),
		DeclRange: block.DefRange,
	}
	content := d.content(block.Body, serviceSchema)
	if attr, ok := content.Attributes["discovery"]; ok {
		s.Discovery = d.resolveDiscovery(attr)
	} else {
		d.errorf(block.DefRange, "Service without discovery", "Service %q does not say where its servers are. Add a discovery source, such as:\n  discovery = discovery.static.local", s.Name)
	}
	if attr, ok := content.Attributes["strategy"]; ok {
		if st := resolve(d, attr, "strategy", d.cfg.strategies); st != nil {
			s.Strategy = st
		}
	}
	if attr, ok := content.Attributes["health"]; ok {
		if hp := resolve(d, attr, "health_policy", d.cfg.healthPolicies); hp != nil {
			s.Health = hp
		}
	}
	if _, ok := content.Attributes["panic_threshold"]; ok {
		a := d.attrs(content)
		a.float("panic_threshold", 0, 100, &s.PanicThreshold)
		d.merge(a)
	}
	if rb := d.singleBlock(content.Blocks, "retry", "service"); rb != nil {
		d.decodeRetryBlock(rb, &s.Retry)
	}
	if ob := d.singleBlock(content.Blocks, "outcomes", "service"); ob != nil {
		oc := d.content(ob.Body, outcomesSchema)
		a := d.attrs(oc)
		a.codes("failure_codes", &s.Outcomes.FailureCodes)
		if attr, ok := oc.Attributes["failure_codes"]; ok && s.Outcomes.FailureCodes == 0 && !a.diags.HasErrors() {
			a.errorf(attr.Expr.Range(), "No failure codes", "failure_codes lists the statuses an endpoint is blamed for; an empty list would blame it for nothing. Remove the attribute to use the defaults: %s.", lb.DefaultFailureCodes)
		}
		d.merge(a)
	}
	if ob := d.singleBlock(content.Blocks, "outlier_detection", "service"); ob != nil {
		s.OutlierDetection = d.decodeOutlierBlock(ob)
	}
	if b := d.singleBlock(content.Blocks, "circuit_breakers", "service"); b != nil {
		cb := &lb.CircuitBreakers{}
		bc := d.content(b.Body, circuitBreakersSchema)
		a := d.attrs(bc)
		a.int("max_requests", 1, lb.MaxLimit, &cb.MaxRequests)
		a.int("max_requests_per_endpoint", 1, lb.MaxLimit, &cb.MaxRequestsPerEndpoint)
		a.int("max_pending", 1, lb.MaxLimit, &cb.MaxPending)
		if len(bc.Attributes) == 0 {
			a.errorf(b.DefRange, "Empty circuit_breakers block", "Set max_requests (the service's calls in flight), max_requests_per_endpoint (each endpoint's), max_pending (calls waiting for a connection), or several.")
		}
		d.merge(a)
		s.CircuitBreakers = cb
	}
	if b := d.singleBlock(content.Blocks, "hedging", "service"); b != nil {
		s.Hedging = d.decodeHedgingBlock(b)
	}
	if b := d.singleBlock(content.Blocks, "rate_limit", "service"); b != nil {
		rl := &lb.RateLimit{}
		a := d.attrs(d.content(b.Body, rateLimitSchema))
		a.float("requests_per_second", 0.001, 1e9, &rl.RequestsPerSecond)
		a.int("burst", 1, lb.MaxLimit, &rl.Burst)
		d.merge(a)
		s.RateLimit = rl
	}
	if cb := d.singleBlock(content.Blocks, "client", "service"); cb != nil {
		cc := d.content(cb.Body, clientSchema)
		a := d.attrs(cc)
		a.duration("connection_timeout", false, &s.Client.ConnectionTimeout)
		a.duration("keepalive_interval", false, &s.Client.KeepAliveInterval)
		a.duration("keepalive_timeout", false, &s.Client.KeepAliveTimeout)
		a.size("max_receive_size", &s.Client.MaxReceiveSize)
		a.size("max_send_size", &s.Client.MaxSendSize)
		a.string("user_agent", &s.Client.UserAgent)
		d.merge(a)
		if tb := d.singleBlock(cc.Blocks, "tls", "client block"); tb != nil {
			s.Client.TLS = d.decodeTLSBlock(tb)
		}
	}
	if b := d.singleBlock(content.Blocks, "locality", "service"); b != nil {
		s.Locality = d.decodeLocalityBlock(b, s)
	}
	if b := d.singleBlock(content.Blocks, "subset", "service"); b != nil {
		sub := &lb.SubsetConfig{}
		bc := d.content(b.Body, subsetSchema)
		a := d.attrs(bc)
		a.int("size", 1, lb.MaxLimit, &sub.Size)
		if _, ok := bc.Attributes["client_index"]; ok {
			index := 0
			a.int("client_index", 0, 1<<30, &index)
			sub.ClientIndex = &index
		}
		d.merge(a)
		s.Subset = sub
	}
	d.checkWeightsUsed(s, content)
	declare(d, "service", s.Name, s, d.cfg.services, &d.cfg.Services)
}

// decodeLocalityBlock reads a service's locality block: the mode (from
// priorities when it is not given), the client's zone and each mode's
// settings, checked by lb.Locality.Validate against the service's
// strategy.
func (d *decoder) decodeLocalityBlock(b *hcl.Block, s *Service) *lb.Locality {
	content := d.content(b.Body, localitySchema)
	a := d.attrs(content)
	l := &lb.Locality{Mode: lb.PreferLocal}
	if _, ok := content.Attributes["priorities"]; ok {
		l.Mode = lb.Priorities
	}
	a.string("mode", &l.Mode)
	a.string("local_zone", &l.LocalZone)
	a.int("min_cluster_size", 1, lb.MaxLimit, &l.MinClusterSize)
	a.int("overprovisioning_factor", 100, 1000, &l.OverprovisioningFactor)
	a.decode("priorities", &l.Priorities)
	a.decode("client_zones", &l.ClientZones)
	d.merge(a)
	if a.diags.HasErrors() {
		return l
	}
	if err := l.Validate(s.Strategy.Kind); err != nil {
		why := strings.TrimPrefix(err.Error(), "locality: ")
		d.errorf(b.DefRange, "Invalid locality block", "%s%s.", strings.ToUpper(why[:1]), why[1:])
		return l
	}
	if s.Discovery != nil && s.Discovery.Kind == StaticKind && l.LocalZone != "" {
		for _, e := range s.Discovery.Endpoints {
			if e.Zone == l.LocalZone {
				return l
			}
		}
		d.warnf(content.Attributes["local_zone"].Expr.Range(), "No endpoint in the local zone",
			"No endpoint of discovery static %q is in zone %q, so every call will cross zones. Check the endpoints' zone attributes.", s.Discovery.Name, l.LocalZone)
	}
	return l
}

// decodeRetryBlock reads a service's retry block over the defaults: A6's
// backoff names (delay is initial_backoff's older name), Envoy's
// per_try_timeout, and the budget and throttling blocks.
func (d *decoder) decodeRetryBlock(block *hcl.Block, r *policy.Retry) {
	content := d.content(block.Body, retrySchema)
	a := d.attrs(content)
	a.int("max_retries", 0, 10, &r.MaxRetries)
	a.duration("delay", true, &r.Delay)
	if attr, ok := content.Attributes["initial_backoff"]; ok {
		a.duration("initial_backoff", true, &r.Delay)
		if content.Attributes["delay"] != nil {
			a.errorf(attr.Range, "Two names for one setting", "initial_backoff (gRPC's name) and delay are the same setting, the first backoff: set one.")
		}
	}
	a.float("backoff_multiplier", 1, 10, &r.BackoffMultiplier)
	if attr, ok := content.Attributes["max_backoff"]; ok {
		a.duration("max_backoff", false, &r.MaxBackoff)
		if r.MaxBackoff > 0 && r.MaxBackoff < r.Delay {
			a.errorf(attr.Expr.Range(), "Backoff capped below its start", "max_backoff (%s) is less than the first backoff (%s): raise it, or lower delay.", r.MaxBackoff, r.Delay)
		}
	}
	a.duration("failover_timeout", false, &r.FailoverTimeout)
	a.duration("per_try_timeout", false, &r.PerTryTimeout)
	a.codes("retryable_codes", &r.RetryableCodes)
	d.merge(a)
	if b := d.singleBlock(content.Blocks, "budget", "retry block"); b != nil {
		budget := lb.DefaultRetryBudget()
		bc := d.content(b.Body, retryBudgetSchema)
		ba := d.attrs(bc)
		enabled := true
		ba.bool("enabled", &enabled)
		ba.float("percent", 0, 1000, &budget.Percent)
		ba.float("min_retries_per_second", 0, 1e6, &budget.MinRetriesPerSecond)
		if attr, ok := bc.Attributes["ttl"]; ok {
			ba.duration("ttl", false, &budget.TTL)
			if budget.TTL < time.Second || budget.TTL > time.Minute {
				ba.errorf(attr.Expr.Range(), "Value out of range", "ttl must be from 1s to 1m, as Finagle's, not %s.", budget.TTL)
			}
		}
		r.Budget = &budget
		if !enabled {
			r.Budget = nil
			for _, as := range retryBudgetSchema.Attributes {
				if attr, set := bc.Attributes[as.Name]; set && as.Name != "enabled" {
					ba.errorf(attr.Range, "Setting of a disabled budget", "enabled = false turns the retry budget off, so %s has no effect: remove one or the other.", as.Name)
				}
			}
		}
		d.merge(ba)
	}
	if b := d.singleBlock(content.Blocks, "throttling", "retry block"); b != nil {
		var th lb.RetryThrottling
		ta := d.attrs(d.content(b.Body, retryThrottlingSchema))
		ta.float("max_tokens", 0.001, 1000, &th.MaxTokens)
		ta.float("token_ratio", 0.001, 1000, &th.TokenRatio)
		d.merge(ta)
		r.Throttling = &th
	}
}

// decodeHedgingBlock reads a hedging block: A6's hedgingPolicy names, and
// the methods that are safe to hedge.
func (d *decoder) decodeHedgingBlock(block *hcl.Block) *policy.Hedging {
	h := &policy.Hedging{MaxAttempts: 2}
	content := d.content(block.Body, hedgingSchema)
	a := d.attrs(content)
	a.int("max_attempts", 2, policy.MaxHedgingAttempts, &h.MaxAttempts)
	a.duration("delay", true, &h.Delay)
	a.codes("non_fatal_codes", &h.NonFatalCodes)
	if attr, ok := a.decode("methods", &h.Methods); ok {
		if len(h.Methods) == 0 {
			a.errorf(attr.Expr.Range(), "No methods to hedge", "methods lists the methods safe to run more than once (idempotent ones), such as [\"GetUserData\"] or [\"/peervault.PeerVaultService/Get*\"]; an empty list hedges nothing: remove the block instead.")
		}
		for _, m := range h.Methods {
			if _, err := path.Match(m, ""); err != nil || m == "" {
				a.errorf(attr.Expr.Range(), "Invalid method pattern", "%q is neither a method name nor a valid pattern: write \"GetUserData\", \"Get*\" or \"/peervault.PeerVaultService/GetUserData\".", m)
			}
		}
	}
	d.merge(a)
	return h
}

// decodeOutlierBlock reads an outlier_detection block: A50's and Envoy's
// names and defaults; success_rate and failure_percentage are on when their
// blocks are present.
func (d *decoder) decodeOutlierBlock(block *hcl.Block) *lb.OutlierDetection {
	od := lb.DefaultOutlierDetection()
	content := d.content(block.Body, outlierSchema)
	a := d.attrs(content)
	a.duration("interval", false, &od.Interval)
	a.duration("base_ejection_time", false, &od.BaseEjectionTime)
	a.duration("max_ejection_time", false, &od.MaxEjectionTime)
	a.int("max_ejection_percent", 0, 100, &od.MaxEjectionPercent)
	a.int("consecutive_failures", 0, 1000, &od.ConsecutiveFailures)
	d.merge(a)
	if b := d.singleBlock(content.Blocks, "success_rate", "outlier_detection block"); b != nil {
		sr := lb.DefaultSuccessRate()
		a := d.attrs(d.content(b.Body, successRateSchema))
		a.int("stdev_factor", 0, 1<<20, &sr.StdevFactor)
		a.int("enforcement_percentage", 0, 100, &sr.EnforcementPercentage)
		a.int("minimum_hosts", 1, 1<<20, &sr.MinimumHosts)
		a.int("request_volume", 1, 1<<30, &sr.RequestVolume)
		d.merge(a)
		od.SuccessRate = &sr
	}
	if b := d.singleBlock(content.Blocks, "failure_percentage", "outlier_detection block"); b != nil {
		fp := lb.DefaultFailurePercentage()
		a := d.attrs(d.content(b.Body, failurePercentageSchema))
		a.int("threshold", 0, 100, &fp.Threshold)
		a.int("enforcement_percentage", 0, 100, &fp.EnforcementPercentage)
		a.int("minimum_hosts", 1, 1<<20, &fp.MinimumHosts)
		a.int("request_volume", 1, 1<<30, &fp.RequestVolume)
		d.merge(a)
		od.FailurePercentage = &fp
	}
	return &od
}

// decodeTLSBlock reads the file names for TLS to backends, and reads the
// files too, so that validate reports one that is missing or is not PEM
// (relative names are from the working directory, as when connecting).
func (d *decoder) decodeTLSBlock(block *hcl.Block) *tlsfiles.Config {
	t := &tlsfiles.Config{}
	content := d.content(block.Body, tlsSchema)
	a := d.attrs(content)
	a.string("ca_file", &t.CAFile)
	a.string("cert_file", &t.CertFile)
	a.string("key_file", &t.KeyFile)
	a.string("server_name", &t.ServerName)
	if (t.CertFile == "") != (t.KeyFile == "") {
		a.errorf(block.DefRange, "Incomplete client certificate", "cert_file and key_file go together: set both for mutual TLS, or neither.")
	} else if _, err := t.Load(); err != nil {
		rng := block.DefRange
		var fe *tlsfiles.FileError
		if errors.As(err, &fe) {
			if attr, ok := content.Attributes[fe.Attr]; ok {
				rng = attr.Expr.Range()
			}
		}
		a.errorf(rng, "Unusable TLS file", "%s.", err)
	}
	d.merge(a)
	return t
}

// validMetadataKey is gRPC's rule for metadata keys.
func validMetadataKey(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

func lowercaseHint(k string) string {
	if l := strings.ToLower(k); l != k && validMetadataKey(l) {
		return fmt.Sprintf(", like %q", l)
	}
	return ""
}

// checkWeightsUsed warns when endpoints carry weights that the service's
// strategy ignores: a setting that silently does nothing is a bug waiting.
func (d *decoder) checkWeightsUsed(s *Service, content *hcl.BodyContent) {
	switch s.Strategy.Kind {
	case lb.Weighted, lb.LeastConnections, lb.PeakEWMA, lb.RingHash, lb.Maglev:
		return // they honour weights
	}
	if s.Discovery == nil {
		return
	}
	for _, ep := range s.Discovery.Endpoints {
		if ep.Weight != 1 {
			rng := s.DeclRange
			if attr, ok := content.Attributes["strategy"]; ok {
				rng = attr.Expr.Range()
			}
			d.warnf(rng, "Endpoint weights have no effect", "Service %q uses the %s strategy, which ignores weights, but %s gives endpoint %q weight %d. Use a strategy of kind weighted, least_connections, peak_ewma, ring_hash or maglev to honour them.",
				s.Name, s.Strategy.Kind, s.Discovery.Ref(), ep.ID, ep.Weight)
			return
		}
	}
}

// resolve reads a reference like strategy.NAME and looks NAME up.
func resolve[T any](d *decoder, attr *hcl.Attribute, root string, table map[string]T) T {
	var zero T
	names := referenceNames(d, attr, root, 2)
	if names == nil {
		return zero
	}
	v, ok := table[names[0]]
	if !ok {
		known := make([]string, 0, len(table))
		for k := range table {
			known = append(known, k)
		}
		slices.Sort(known)
		d.errorf(attr.Expr.Range(), "Reference to undeclared "+root, "No %s named %q is declared.%s%s", root, names[0], didYouMean(names[0], known), listKnown(root, known))
		return zero
	}
	return v
}

func (d *decoder) resolveDiscovery(attr *hcl.Attribute) *Discovery {
	names := referenceNames(d, attr, "discovery", 3)
	if names == nil {
		return nil
	}
	ref := "discovery." + strings.Join(names, ".")
	disc, ok := d.cfg.discoveries[ref]
	if !ok {
		known := make([]string, 0, len(d.cfg.discoveries))
		for k := range d.cfg.discoveries {
			known = append(known, k)
		}
		slices.Sort(known)
		d.errorf(attr.Expr.Range(), "Reference to undeclared discovery", "No discovery source %s is declared.%s%s", ref, didYouMean(ref, known), listKnown("discovery source", known))
		return nil
	}
	return disc
}

func listKnown(what string, known []string) string {
	if len(known) == 0 {
		return fmt.Sprintf(" No %s is declared at all.", what)
	}
	return fmt.Sprintf(" Declared: %s.", strings.Join(known, ", "))
}

// referenceNames reads an expression of the form root.a[.b] with parts
// names after the root, reporting anything else.
func referenceNames(d *decoder, attr *hcl.Attribute, root string, parts int) []string {
	example := root + ".NAME"
	if parts == 3 {
		example = root + ".KIND.NAME"
	}
	trav, diags := hcl.AbsTraversalForExpr(attr.Expr)
	if diags.HasErrors() {
		hint := ""
		if v, err := attr.Expr.Value(nil); err == nil {
			if s := ctyString(v); s != "" {
				if !strings.HasPrefix(s, root+".") {
					s = root + "." + s
				}
				hint = fmt.Sprintf(" Write it without quotes: %s = %s", attr.Name, s)
			}
		}
		d.errorf(attr.Expr.Range(), "Invalid reference", "%s takes a reference to a %s block, like %s.%s", attr.Name, root, example, hint)
		return nil
	}
	if trav.RootName() != root || len(trav) != parts {
		d.errorf(attr.Expr.Range(), "Invalid reference", "%s takes a reference to a %s block, like %s.", attr.Name, root, example)
		return nil
	}
	names := make([]string, 0, parts-1)
	for _, step := range trav[1:] {
		a, ok := step.(hcl.TraverseAttr)
		if !ok {
			d.errorf(attr.Expr.Range(), "Invalid reference", "%s takes a reference like %s; indexes are not allowed.", attr.Name, example)
			return nil
		}
		names = append(names, a.Name)
	}
	return names
}
