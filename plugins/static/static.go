// Package static is the bundled discovery provider for a fixed list of
// endpoints: discovery "static" "NAME" { endpoint "ID" { ... } }. pvlb runs
// it out of process like any other plugin, by starting itself with a hidden
// sub-command; it can also be built as its own pvlb-discovery-static.
package static

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/peervault/pvlb/pkg/pluginapi"
)

// Provider serves the configured endpoints to every service that uses
// them; a static list never changes, so Watch sends it once.
type Provider struct {
	mu        sync.Mutex
	instances []pluginapi.ServiceInstance
}

// Schema is the static block: endpoint blocks, each with an address and an
// optional weight, zone, metadata and simulate block (read by
// `pvlb simulate`, ignored here).
func (p *Provider) Schema() pluginapi.Schema {
	return pluginapi.Schema{Blocks: []pluginapi.Block{{
		Name:        "endpoint",
		Labels:      []string{"id"},
		Multiple:    true,
		Required:    true,
		Description: "one server",
		Schema: pluginapi.Schema{
			Attributes: []pluginapi.Attribute{
				{Name: "address", Type: pluginapi.String, Required: true, Description: "host:port"},
				{Name: "weight", Type: pluginapi.Number, Description: "share of traffic under the weighted strategy (default 1)"},
				{Name: "zone", Type: pluginapi.String},
				{Name: "metadata", Type: pluginapi.MapOfString},
			},
			Blocks: []pluginapi.Block{{
				Name:        "simulate",
				Description: "how pvlb simulate models this server",
				Schema: pluginapi.Schema{Attributes: []pluginapi.Attribute{
					{Name: "latency", Type: pluginapi.String},
					{Name: "error_rate", Type: pluginapi.Number},
					{Name: "capacity", Type: pluginapi.Number},
				}},
			}},
		},
	}}}
}

type settings struct {
	Endpoint map[string]struct {
		Address  string            `json:"address"`
		Weight   *float64          `json:"weight"`
		Zone     *string           `json:"zone"`
		Metadata map[string]string `json:"metadata"`
	} `json:"endpoint"`
}

// Configure checks and keeps the endpoints.
func (p *Provider) Configure(_ context.Context, s pluginapi.Settings) error {
	var cfg settings
	if err := s.Decode(&cfg); err != nil {
		return err
	}
	if len(cfg.Endpoint) == 0 {
		return errors.New("static discovery lists no endpoint")
	}
	ids := make([]string, 0, len(cfg.Endpoint))
	for id := range cfg.Endpoint {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var out []pluginapi.ServiceInstance
	var problems []string
	for _, id := range ids {
		ep := cfg.Endpoint[id]
		host, portStr, err := net.SplitHostPort(ep.Address)
		port, perr := strconv.Atoi(portStr)
		if err != nil || host == "" || perr != nil || port < 1 || port > 65535 {
			problems = append(problems, fmt.Sprintf("endpoint %q: address %q is not host:port", id, ep.Address))
			continue
		}
		in := pluginapi.ServiceInstance{ID: id, Address: host, Port: port, Weight: 1, Metadata: ep.Metadata}
		if ep.Weight != nil {
			w := *ep.Weight
			if w < 1 || w > 65535 || w != float64(int(w)) {
				problems = append(problems, fmt.Sprintf("endpoint %q: weight %v is not a whole number from 1 to 65535", id, w))
				continue
			}
			in.Weight = int(w)
		}
		if ep.Zone != nil {
			in.Zone = *ep.Zone
		}
		out = append(out, in)
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	p.mu.Lock()
	p.instances = out
	p.mu.Unlock()
	return nil
}

// Resolve returns the endpoints, whatever the service's name: a static
// block is its service's list.
func (p *Provider) Resolve(context.Context, string) ([]pluginapi.ServiceInstance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.instances == nil {
		return nil, errors.New("not configured")
	}
	return slices.Clone(p.instances), nil
}

// Watch sends the list once and waits.
func (p *Provider) Watch(ctx context.Context, service string, updates chan<- []pluginapi.ServiceInstance) error {
	instances, err := p.Resolve(ctx, service)
	if err != nil {
		return err
	}
	if pluginapi.Send(ctx, updates, instances) {
		<-ctx.Done()
	}
	return nil
}
