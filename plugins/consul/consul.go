// Package consul is the bundled discovery provider for services registered
// in Consul: discovery "consul" "NAME" { ... }. It follows a service's
// health with blocking queries and reports Consul's check results, weights,
// addresses and metadata.
package consul

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/peervault/pvlb/pkg/pluginapi"
	"github.com/peervault/pvlb/pkg/tlsfiles"
	"github.com/peervault/pvlb/plugins/internal/providerkit"
)

// DefaultTimeout bounds a non-blocking call to Consul.
const DefaultTimeout = 5 * time.Second

// Provider follows services in one Consul datacenter.
type Provider struct {
	mu     sync.Mutex
	client *api.Client
	cfg    settings
}

type settings struct {
	Address     *string          `json:"address"`
	Scheme      *string          `json:"scheme"`
	Datacenter  *string          `json:"datacenter"`
	Token       *string          `json:"token"`
	TokenFile   *string          `json:"token_file"`
	ServiceName *string          `json:"service_name"`
	Tags        []string         `json:"tags"`
	PassingOnly *bool            `json:"passing_only"`
	Namespace   *string          `json:"namespace"`
	Partition   *string          `json:"partition"`
	Near        *string          `json:"near"`
	WaitTime    *string          `json:"wait_time"`
	Stale       *bool            `json:"stale"`
	Timeout     *string          `json:"timeout"`
	Tagged      *string          `json:"tagged_address"`
	TLS         *providerkit.TLS `json:"tls"`

	passingOnly bool
	waitTime    time.Duration
	timeout     time.Duration
}

// Schema describes the consul block.
func (p *Provider) Schema() pluginapi.Schema {
	str := func(name, desc string) pluginapi.Attribute {
		return pluginapi.Attribute{Name: name, Type: pluginapi.String, Description: desc}
	}
	token := str("token", "ACL token; use env(\"CONSUL_HTTP_TOKEN\") or token_file")
	token.Sensitive = true
	return pluginapi.Schema{
		Attributes: []pluginapi.Attribute{
			str("address", "Consul HTTP address (default $CONSUL_HTTP_ADDR or 127.0.0.1:8500)"),
			str("scheme", "http or https"),
			str("datacenter", "datacenter to query (default the agent's)"),
			token,
			str("token_file", "file holding the ACL token"),
			str("service_name", "Consul service name (default the pvlb service's name)"),
			{Name: "tags", Type: pluginapi.ListOfString, Description: "instances must carry all of these tags"},
			{Name: "passing_only", Type: pluginapi.Bool, Description: "report only passing instances (default true)"},
			str("namespace", "Consul Enterprise namespace"),
			str("partition", "Consul Enterprise admin partition"),
			str("near", "sort by round-trip time from this node (_agent for the local one)"),
			str("wait_time", "longest a blocking query waits (default 5m)"),
			{Name: "stale", Type: pluginapi.Bool, Description: "allow stale reads from any server"},
			str("timeout", "bound on other calls to Consul (default 5s)"),
			str("tagged_address", "use this tagged address of the service, such as lan_ipv4"),
		},
		Blocks: []pluginapi.Block{providerkit.TLSBlock("TLS to Consul (implies https)",
			pluginapi.Attribute{Name: "insecure_skip_verify", Type: pluginapi.Bool, Description: "do not verify the server's certificate (testing only)"})},
	}
}

// apiConfig starts from api.DefaultConfig, which reads the CONSUL_HTTP_*
// variables as the consul CLI does, and applies the block's settings.
func (s *settings) apiConfig() (*api.Config, error) {
	var problems []error
	cfg := api.DefaultConfig()
	if a := providerkit.String(s.Address); a != "" {
		cfg.Address = a
	}
	if sc := providerkit.String(s.Scheme); sc != "" {
		if sc != "http" && sc != "https" {
			problems = append(problems, pluginapi.Invalid("scheme", "%q is not \"http\" or \"https\"", sc))
		}
		cfg.Scheme = sc
	}
	cfg.Datacenter = providerkit.String(s.Datacenter)
	cfg.Namespace = providerkit.String(s.Namespace)
	cfg.Partition = providerkit.String(s.Partition)
	if t := providerkit.String(s.Token); t != "" {
		cfg.Token = t
	}
	if f := providerkit.String(s.TokenFile); f != "" {
		if providerkit.String(s.Token) != "" {
			problems = append(problems, pluginapi.Invalid("token_file", "set token or token_file, not both"))
		} else if b, err := os.ReadFile(f); err != nil {
			problems = append(problems, pluginapi.Invalid("token_file", "%v", err))
		} else {
			cfg.Token = strings.TrimSpace(string(b))
		}
	}
	if s.TLS != nil {
		cfg.Scheme = "https"
		cfg.TLSConfig = api.TLSConfig{
			CAFile: providerkit.String(s.TLS.CAFile), CertFile: providerkit.String(s.TLS.CertFile), KeyFile: providerkit.String(s.TLS.KeyFile),
			Address: providerkit.String(s.TLS.ServerName), InsecureSkipVerify: s.TLS.InsecureSkipVerify != nil && *s.TLS.InsecureSkipVerify,
		}
		t := tlsfiles.Config{CAFile: cfg.TLSConfig.CAFile, CertFile: cfg.TLSConfig.CertFile, KeyFile: cfg.TLSConfig.KeyFile}
		if _, err := t.Load(); err != nil {
			problems = append(problems, providerkit.TLSProblem(err))
		}
	}
	s.passingOnly = s.PassingOnly == nil || *s.PassingOnly
	var err error
	if s.waitTime, err = pluginapi.Duration("wait_time", providerkit.String(s.WaitTime), 5*time.Minute); err != nil {
		problems = append(problems, err)
	}
	if s.timeout, err = pluginapi.Duration("timeout", providerkit.String(s.Timeout), DefaultTimeout); err != nil {
		problems = append(problems, err)
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	// Blocking queries wait up to wait_time (Consul adds up to 1/16 of
	// it); everything else must answer within timeout.
	cfg.WaitTime = s.waitTime
	return cfg, nil
}

// Validate checks the settings without connecting: what Configure would
// refuse before it asks Consul anything.
func (p *Provider) Validate(s pluginapi.Settings) []pluginapi.Problem {
	var cfg settings
	if err := s.Decode(&cfg); err != nil {
		return pluginapi.Problems(err)
	}
	_, err := cfg.apiConfig()
	return pluginapi.Problems(err)
}

// Configure connects and checks that Consul answers, with the token given,
// within timeout.
func (p *Provider) Configure(ctx context.Context, s pluginapi.Settings) error {
	var cfg settings
	if err := s.Decode(&cfg); err != nil {
		return err
	}
	acfg, err := cfg.apiConfig()
	if err != nil {
		return err
	}
	client, err := api.NewClient(acfg)
	if err != nil {
		return fmt.Errorf("consul: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	// A catalog read needs a token that may read services: it finds a
	// rejected token now rather than at the first watch.
	if _, _, err := client.Catalog().Services((&api.QueryOptions{}).WithContext(cctx)); err != nil {
		if errors.Is(cctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("consul at %s did not answer within timeout %s", acfg.Address, cfg.timeout)
		}
		return fmt.Errorf("consul at %s: %w", acfg.Address, describe(err))
	}
	p.mu.Lock()
	p.client, p.cfg = client, cfg
	p.mu.Unlock()
	return nil
}

// describe names the usual Consul failures plainly; the token never
// appears (Consul's errors do not carry it).
func describe(err error) error {
	var se api.StatusError
	if errors.As(err, &se) {
		switch se.Code {
		case 401, 403:
			return fmt.Errorf("the ACL token was rejected (%s)", strings.TrimSpace(se.Body))
		}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func (p *Provider) state() (*api.Client, settings, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client == nil {
		return nil, settings{}, errors.New("not configured")
	}
	return p.client, p.cfg, nil
}

func (s settings) query(service string, index uint64) (string, *api.QueryOptions) {
	name := providerkit.String(s.ServiceName)
	if name == "" {
		name = service
	}
	return name, &api.QueryOptions{
		AllowStale: s.Stale != nil && *s.Stale,
		Near:       providerkit.String(s.Near),
		WaitIndex:  index,
		WaitTime:   s.waitTime,
	}
}

// Resolve reads the service's instances now.
func (p *Provider) Resolve(ctx context.Context, service string) ([]pluginapi.ServiceInstance, error) {
	client, cfg, err := p.state()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	name, q := cfg.query(service, 0)
	entries, _, err := client.Health().ServiceMultipleTags(name, cfg.Tags, cfg.passingOnly, q.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("consul: %w", describe(err))
	}
	return cfg.instances(entries), nil
}

// Watch follows the service with blocking queries on its health: each
// answer carries an index, and the next query waits until it changes. An
// index that goes backwards (a restored or new cluster) starts over from
// zero; errors back off with jitter while the host keeps the last
// endpoints.
func (p *Provider) Watch(ctx context.Context, service string, updates chan<- []pluginapi.ServiceInstance) error {
	client, cfg, err := p.state()
	if err != nil {
		return err
	}
	var index uint64
	var last []pluginapi.ServiceInstance
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		name, q := cfg.query(service, index)
		entries, meta, err := client.Health().ServiceMultipleTags(name, cfg.Tags, cfg.passingOnly, q.WithContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			fmt.Fprintf(os.Stderr, "consul: watch %s: %v; retrying in %s\n", name, describe(err), backoff)
			if !sleep(ctx, backoff+time.Duration(rand.Int64N(int64(backoff)))) {
				return nil
			}
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		switch {
		case meta.LastIndex < index:
			index = 0 // the index went backwards: read everything again
		default:
			index = max(meta.LastIndex, 1)
		}
		current := cfg.instances(entries)
		if last != nil && slices.EqualFunc(current, last, sameInstance) {
			continue
		}
		last = current
		if !pluginapi.Send(ctx, updates, current) {
			return nil
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func sameInstance(a, b pluginapi.ServiceInstance) bool {
	if a.ID != b.ID || a.Address != b.Address || a.Port != b.Port || a.Weight != b.Weight || a.Health != b.Health || a.Zone != b.Zone || len(a.Metadata) != len(b.Metadata) {
		return false
	}
	for k, v := range a.Metadata {
		if b.Metadata[k] != v {
			return false
		}
	}
	return true
}

// instances maps Consul's health entries to instances.
func (s settings) instances(entries []*api.ServiceEntry) []pluginapi.ServiceInstance {
	out := make([]pluginapi.ServiceInstance, 0, len(entries))
	seen := map[string]bool{}
	for _, e := range entries {
		if e.Service == nil || e.Node == nil {
			continue
		}
		in := pluginapi.ServiceInstance{ID: e.Service.ID, Port: e.Service.Port, Metadata: map[string]string{}}
		if seen[in.ID] { // service ids are unique per node, not per cluster
			in.ID = e.Node.Node + "/" + in.ID
		}
		seen[in.ID] = true
		in.Address = e.Service.Address
		if tag := providerkit.String(s.Tagged); tag != "" {
			if ta, ok := e.Service.TaggedAddresses[tag]; ok && ta.Address != "" {
				in.Address, in.Port = ta.Address, ta.Port
			}
		}
		if in.Address == "" {
			in.Address = e.Node.Address
		}
		if h, p, err := net.SplitHostPort(in.Address); err == nil { // an address with its own port
			if port, err := strconv.Atoi(p); err == nil {
				in.Address, in.Port = h, port
			}
		}
		switch e.Checks.AggregatedStatus() {
		case api.HealthPassing:
			in.Health = pluginapi.HealthHealthy
			in.Weight = e.Service.Weights.Passing
		case api.HealthWarning:
			in.Health = pluginapi.HealthHealthy // still serving, at its warning weight
			in.Weight = e.Service.Weights.Warning
		default: // critical, maintenance
			in.Health = pluginapi.HealthUnhealthy
			in.Weight = e.Service.Weights.Passing
		}
		in.Weight = max(in.Weight, 1)
		for k, v := range e.Service.Meta {
			in.Metadata[k] = v
		}
		if len(e.Service.Tags) > 0 {
			in.Metadata["tags"] = strings.Join(e.Service.Tags, ",")
		}
		in.Metadata["node"] = e.Node.Node
		in.Zone = e.Service.Meta["zone"]
		if in.Zone == "" {
			in.Zone = e.Node.Meta["zone"]
		}
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b pluginapi.ServiceInstance) int { return strings.Compare(a.ID, b.ID) })
	return out
}
