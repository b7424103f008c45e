// Package dns is the bundled discovery provider for services found in
// DNS: discovery "dns" "NAME" { name = "peervault.example.com" }. It
// reads A and AAAA records (every address on one port, as grpc-go's
// dns:/// resolver does) or SRV records (each target's port and weight),
// asks again when the answer's TTL runs out (within a floor and a
// ceiling), and keeps the last good answer while DNS fails.
package dns

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/peervault/pvlb/pkg/pluginapi"
	"github.com/peervault/pvlb/plugins/internal/providerkit"
)

// Record kinds.
const (
	// Address reads A and AAAA records: every address, on port.
	Address = "address"
	// SRV reads SRV records: each target's addresses, port and weight.
	SRV = "srv"
)

// Defaults, Envoy's where it has them.
const (
	DefaultPort = 443 // grpc-go's, for dns:/// without a port
	// DefaultMinRefresh is Envoy's dns_min_refresh_rate: however short
	// the TTL, no more than a query per name every 5s.
	DefaultMinRefresh = 5 * time.Second
	DefaultMaxRefresh = 5 * time.Minute
	DefaultTimeout    = 2 * time.Second
	resolvConf        = "/etc/resolv.conf"
)

// Provider follows one name in DNS.
type Provider struct {
	mu  sync.Mutex
	cfg settings
}

type settings struct {
	Name       *string  `json:"name"`
	Record     *string  `json:"record"`
	Port       *float64 `json:"port"`
	Servers    []string `json:"servers"`
	MinRefresh *string  `json:"min_refresh"`
	MaxRefresh *string  `json:"max_refresh"`
	Timeout    *string  `json:"timeout"`

	record                          string
	port                            int
	servers                         []string
	minRefresh, maxRefresh, timeout time.Duration
}

// Schema describes the dns block.
func (p *Provider) Schema() pluginapi.Schema {
	return pluginapi.Schema{
		Attributes: []pluginapi.Attribute{
			{Name: "name", Type: pluginapi.String, Description: "the DNS name to look up (default: the service's name)"},
			{Name: "record", Type: pluginapi.String, Description: "address (A and AAAA, the default) or srv"},
			{Name: "port", Type: pluginapi.Number, Description: "the servers' port, for address records (default 443)"},
			{Name: "servers", Type: pluginapi.ListOfString, Description: "DNS servers to ask, host:port (default: /etc/resolv.conf's)"},
			{Name: "min_refresh", Type: pluginapi.String, Description: "the least time between two lookups, however short the TTL (default 5s)"},
			{Name: "max_refresh", Type: pluginapi.String, Description: "the most time between two lookups, however long the TTL (default 5m)"},
			{Name: "timeout", Type: pluginapi.String, Description: "how long to wait for a DNS server (default 2s)"},
		},
	}
}

func (s *settings) check() error {
	var problems []error
	s.record = Address
	if r := strings.ToLower(providerkit.String(s.Record)); r != "" {
		if r != Address && r != SRV {
			problems = append(problems, pluginapi.Invalid("record", "%q is not %q or %q", r, Address, SRV))
		}
		s.record = r
	}
	s.port = DefaultPort
	if s.Port != nil {
		p := *s.Port
		switch {
		case s.record == SRV:
			problems = append(problems, pluginapi.Invalid("port", "applies to address records; SRV records carry their own ports"))
		case p != math.Trunc(p) || p < 1 || p > 65535:
			problems = append(problems, pluginapi.Invalid("port", "%g is not a port from 1 to 65535", p))
		default:
			s.port = int(p)
		}
	}
	if n := providerkit.String(s.Name); s.Name != nil && (n == "" || strings.ContainsAny(n, " /:")) {
		problems = append(problems, pluginapi.Invalid("name", "%q is not a DNS name", n))
	}
	s.servers = nil
	for _, addr := range s.Servers {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			host, port = addr, "53"
		}
		if host == "" || net.ParseIP(strings.Trim(host, "[]")) == nil && strings.ContainsAny(host, " /") {
			problems = append(problems, pluginapi.Invalid("servers", "%q is not a host:port", addr))
			continue
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			problems = append(problems, pluginapi.Invalid("servers", "%q has no valid port", addr))
			continue
		}
		s.servers = append(s.servers, net.JoinHostPort(host, port))
	}
	var err error
	if s.minRefresh, err = pluginapi.Duration("min_refresh", providerkit.String(s.MinRefresh), DefaultMinRefresh); err != nil {
		problems = append(problems, err)
	}
	if s.maxRefresh, err = pluginapi.Duration("max_refresh", providerkit.String(s.MaxRefresh), DefaultMaxRefresh); err != nil {
		problems = append(problems, err)
	}
	if s.timeout, err = pluginapi.Duration("timeout", providerkit.String(s.Timeout), DefaultTimeout); err != nil {
		problems = append(problems, err)
	}
	if s.minRefresh > 0 && s.maxRefresh > 0 && s.maxRefresh < s.minRefresh {
		problems = append(problems, pluginapi.Invalid("max_refresh", "%s is less than min_refresh %s", s.maxRefresh, s.minRefresh))
	}
	return errors.Join(problems...)
}

// Validate checks the settings without asking DNS.
func (p *Provider) Validate(s pluginapi.Settings) []pluginapi.Problem {
	var cfg settings
	if err := s.Decode(&cfg); err != nil {
		return pluginapi.Problems(err)
	}
	return pluginapi.Problems(cfg.check())
}

// Configure takes the settings and finds the DNS servers to ask.
func (p *Provider) Configure(_ context.Context, s pluginapi.Settings) error {
	var cfg settings
	if err := s.Decode(&cfg); err != nil {
		return err
	}
	if err := cfg.check(); err != nil {
		return err
	}
	if len(cfg.servers) == 0 {
		rc, err := dns.ClientConfigFromFile(resolvConf)
		if err != nil || len(rc.Servers) == 0 {
			return fmt.Errorf("no DNS server: %s names none (%v); set servers", resolvConf, err)
		}
		for _, h := range rc.Servers {
			cfg.servers = append(cfg.servers, net.JoinHostPort(h, rc.Port))
		}
	}
	p.mu.Lock()
	p.cfg = cfg
	p.mu.Unlock()
	return nil
}

func (p *Provider) settings() settings {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg
}

// Resolve looks the service up now.
func (p *Provider) Resolve(ctx context.Context, service string) ([]pluginapi.ServiceInstance, error) {
	instances, _, err := p.lookup(ctx, service)
	return instances, err
}

// Watch looks the service up again each time the answer's TTL runs out
// (within min_refresh and max_refresh), and sends the instances when they
// change. A failed lookup, or an empty answer, ends the watch with the
// error: pvlb keeps the last instances and watches again.
func (p *Provider) Watch(ctx context.Context, service string, updates chan<- []pluginapi.ServiceInstance) error {
	var last []pluginapi.ServiceInstance
	for first := true; ; first = false {
		instances, ttl, err := p.lookup(ctx, service)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if first || !slices.EqualFunc(instances, last, sameInstance) {
			if !pluginapi.Send(ctx, updates, instances) {
				return nil
			}
			last = instances
		}
		cfg := p.settings()
		t := time.NewTimer(min(max(ttl, cfg.minRefresh), cfg.maxRefresh))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

func sameInstance(a, b pluginapi.ServiceInstance) bool {
	return a.ID == b.ID && a.Address == b.Address && a.Port == b.Port && a.Weight == b.Weight
}

// lookup returns the service's instances, sorted by id, and the shortest
// TTL of the records they came from.
func (p *Provider) lookup(ctx context.Context, service string) ([]pluginapi.ServiceInstance, time.Duration, error) {
	cfg := p.settings()
	name := providerkit.String(cfg.Name)
	if name == "" {
		name = service
	}
	name = dns.Fqdn(name)
	q := &querier{cfg: cfg, ttl: time.Duration(math.MaxInt64)}
	var instances []pluginapi.ServiceInstance
	if cfg.record == SRV {
		var err error
		if instances, err = q.srv(ctx, name); err != nil {
			return nil, 0, err
		}
	} else {
		addrs, err := q.addresses(ctx, name, nil)
		if err != nil {
			return nil, 0, err
		}
		for _, a := range addrs {
			instances = append(instances, pluginapi.ServiceInstance{
				ID: net.JoinHostPort(a, strconv.Itoa(cfg.port)), Address: a, Port: cfg.port, Weight: 1, Health: pluginapi.HealthUnknown,
			})
		}
	}
	if len(instances) == 0 {
		return nil, 0, fmt.Errorf("%s has no %s records", strings.TrimSuffix(name, "."), recordNames(cfg.record))
	}
	slices.SortFunc(instances, func(a, b pluginapi.ServiceInstance) int { return strings.Compare(a.ID, b.ID) })
	return instances, q.ttl, nil
}

func recordNames(record string) string {
	if record == SRV {
		return "SRV"
	}
	return "A or AAAA"
}

// querier asks the configured servers, keeping the shortest TTL seen.
type querier struct {
	cfg settings
	ttl time.Duration
}

func (q *querier) saw(rr dns.RR) {
	q.ttl = min(q.ttl, time.Duration(rr.Header().Ttl)*time.Second)
}

// srv reads name's SRV records of the lowest priority (RFC 2782: the
// others are for when those fail), each target's addresses taken from
// the answer's additional section when there, else looked up.
func (q *querier) srv(ctx context.Context, name string) ([]pluginapi.ServiceInstance, error) {
	resp, err := q.exchange(ctx, name, dns.TypeSRV)
	if err != nil {
		return nil, err
	}
	var records []*dns.SRV
	for _, rr := range resp.Answer {
		if s, ok := rr.(*dns.SRV); ok && s.Target != "." {
			records = append(records, s)
		}
	}
	if len(records) == 0 {
		return nil, nil
	}
	lowest := slices.MinFunc(records, func(a, b *dns.SRV) int { return int(a.Priority) - int(b.Priority) }).Priority
	var out []pluginapi.ServiceInstance
	for _, s := range records {
		if s.Priority != lowest {
			continue
		}
		q.saw(s)
		addrs, err := q.addresses(ctx, s.Target, resp.Extra)
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			out = append(out, pluginapi.ServiceInstance{
				ID:      net.JoinHostPort(a, strconv.Itoa(int(s.Port))),
				Address: a, Port: int(s.Port),
				// SRV weight 0 means "rarely, when nothing else": the
				// smallest weight pvlb has.
				Weight:   max(int(s.Weight), 1),
				Health:   pluginapi.HealthUnknown,
				Metadata: map[string]string{"srv_target": strings.TrimSuffix(s.Target, "."), "srv_priority": strconv.Itoa(int(s.Priority))},
			})
		}
	}
	return out, nil
}

// addresses returns name's A and AAAA addresses, from extra when it has
// them.
func (q *querier) addresses(ctx context.Context, name string, extra []dns.RR) ([]string, error) {
	var out []string
	collect := func(rrs []dns.RR) {
		for _, rr := range rrs {
			if !strings.EqualFold(rr.Header().Name, name) {
				continue
			}
			switch r := rr.(type) {
			case *dns.A:
				out = append(out, r.A.String())
				q.saw(rr)
			case *dns.AAAA:
				out = append(out, r.AAAA.String())
				q.saw(rr)
			}
		}
	}
	collect(extra)
	if len(out) > 0 {
		return out, nil
	}
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		resp, err := q.exchange(ctx, name, t)
		if err != nil {
			return nil, err
		}
		collect(resp.Answer)
	}
	return out, nil
}

// exchange asks each server in turn until one answers: over UDP, then
// TCP when the answer was truncated. NXDOMAIN is an answer (no records).
func (q *querier) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	msg := new(dns.Msg)
	msg.SetQuestion(name, qtype)
	var errs []error
	for _, server := range q.cfg.servers {
		c := &dns.Client{Timeout: q.cfg.timeout}
		resp, _, err := c.ExchangeContext(ctx, msg, server)
		if err == nil && resp.Truncated {
			c.Net = "tcp"
			resp, _, err = c.ExchangeContext(ctx, msg, server)
		}
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", server, err))
		case resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError:
			errs = append(errs, fmt.Errorf("%s answered %s", server, dns.RcodeToString[resp.Rcode]))
		default:
			return resp, nil
		}
	}
	return nil, fmt.Errorf("look up %s %s: %w", strings.TrimSuffix(name, "."), dns.TypeToString[qtype], errors.Join(errs...))
}
