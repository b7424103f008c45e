package grpcpolicy

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/peervault/pvlb/pkg/lb"
)

// Scheme is the target scheme of pvlb's resolver: "pvlb:///SERVICE".
const Scheme = "pvlb"

// attribute keys: the LoadBalancer rides on the resolver state, each
// endpoint's *Endpoint on its resolver.Endpoint, so the balancer can map
// pvlb's picks to subchannels.
type (
	balancerKey struct{}
	endpointKey struct{}
)

// NewResolverBuilder returns a resolver for targets "pvlb:///SERVICE" that
// emits the endpoints of the balancer whose configuration names SERVICE,
// and follows its membership changes. Pass it with grpc.WithResolvers; the
// resolver also selects the "pvlb" load balancing policy, so the channel
// picks with the same strategy, health and sticky sessions as the
// LoadBalancer:
//
//	cc, err := grpc.NewClient("pvlb:///peervault",
//		grpc.WithResolvers(grpcpolicy.NewResolverBuilder(balancer)),
//		grpc.WithTransportCredentials(insecure.NewCredentials()))
//
// The service config the resolver supplies replaces any given with
// grpc.WithDefaultServiceConfig (grpc-go uses a resolver's config when it
// has one), so a retry policy goes to NewResolverBuilderWithServiceConfig
// instead.
func NewResolverBuilder(balancers ...*lb.LoadBalancer) resolver.Builder {
	b, _ := NewResolverBuilderWithServiceConfig("", balancers...) // an empty config cannot fail
	return b
}

// NewResolverBuilderWithServiceConfig is NewResolverBuilder whose channels
// take serviceConfig, grpc-go's service config JSON (methodConfig with its
// retryPolicy, timeouts, waitForReady...), with the pvlb policy as its
// load balancing config. A config that chooses another policy, or that
// does not parse, is an error here rather than silently replaced.
func NewResolverBuilderWithServiceConfig(serviceConfig string, balancers ...*lb.LoadBalancer) (resolver.Builder, error) {
	doc := map[string]any{}
	if strings.TrimSpace(serviceConfig) != "" {
		if err := json.Unmarshal([]byte(serviceConfig), &doc); err != nil {
			return nil, fmt.Errorf("pvlb resolver: service config: %w", err)
		}
	}
	if _, ok := doc["loadBalancingPolicy"]; ok {
		return nil, fmt.Errorf("pvlb resolver: service config sets loadBalancingPolicy; the pvlb resolver chooses the %q policy itself: remove it", Name)
	}
	if lbc, ok := doc["loadBalancingConfig"]; ok {
		list, _ := lbc.([]any)
		first, _ := firstOf(list).(map[string]any)
		if _, isPvlb := first[Name]; !isPvlb || len(first) != 1 {
			return nil, fmt.Errorf("pvlb resolver: service config chooses another load balancing policy than %q: remove its loadBalancingConfig", Name)
		}
	}
	doc["loadBalancingConfig"] = []any{map[string]any{Name: map[string]any{}}}
	merged, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("pvlb resolver: service config: %w", err)
	}
	b := &resolverBuilder{balancers: map[string]*lb.LoadBalancer{}, serviceConfig: string(merged)}
	for _, balancer := range balancers {
		b.balancers[balancer.Service()] = balancer
	}
	return b, nil
}

func firstOf(list []any) any {
	if len(list) == 0 {
		return nil
	}
	return list[0]
}

type resolverBuilder struct {
	balancers     map[string]*lb.LoadBalancer
	serviceConfig string // JSON, with the pvlb policy
}

func (b *resolverBuilder) Scheme() string { return Scheme }

func (b *resolverBuilder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	name := target.Endpoint()
	balancer, ok := b.balancers[name]
	if !ok {
		known := make([]string, 0, len(b.balancers))
		for k := range b.balancers {
			known = append(known, strconv.Quote(k))
		}
		return nil, fmt.Errorf("pvlb resolver: no balancer for service %q (have %v)", name, known)
	}
	r := &pvlbResolver{cc: cc, balancer: balancer}
	r.serviceConfig = cc.ParseServiceConfig(b.serviceConfig)
	if r.serviceConfig.Err != nil {
		return nil, fmt.Errorf("pvlb resolver: service config: %w", r.serviceConfig.Err)
	}
	r.cancel = balancer.Subscribe(r.update)
	return r, nil
}

type pvlbResolver struct {
	cc            resolver.ClientConn
	balancer      *lb.LoadBalancer
	serviceConfig *serviceconfig.ParseResult
	cancel        func()

	mu   sync.Mutex
	last []*lb.Endpoint
}

// update publishes the balancer's endpoints to the channel.
func (r *pvlbResolver) update(all []*lb.Endpoint) {
	r.mu.Lock()
	r.last = all
	r.mu.Unlock()
	state := resolver.State{
		Endpoints:     make([]resolver.Endpoint, 0, len(all)),
		ServiceConfig: r.serviceConfig,
		Attributes:    attributes.New(balancerKey{}, r.balancer),
	}
	for _, e := range all {
		state.Endpoints = append(state.Endpoints, resolver.Endpoint{
			Addresses:  []resolver.Address{{Addr: e.Address}},
			Attributes: attributes.New(endpointKey{}, e),
		})
	}
	_ = r.cc.UpdateState(state) // an error means the channel is closing
}

// ResolveNow re-sends the current endpoints: the LoadBalancer is the
// source of truth, so there is nothing to fetch, but a channel that asks
// (after a connection failure, say) gets a fresh state at once.
func (r *pvlbResolver) ResolveNow(resolver.ResolveNowOptions) {
	r.mu.Lock()
	last := r.last
	r.mu.Unlock()
	go r.update(last) // never call back into the channel from ResolveNow itself
}

func (r *pvlbResolver) Close() { r.cancel() }
