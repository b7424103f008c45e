package grpcpolicy

import (
	"fmt"
	"strconv"
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
func NewResolverBuilder(balancers ...*lb.LoadBalancer) resolver.Builder {
	b := &resolverBuilder{balancers: map[string]*lb.LoadBalancer{}}
	for _, balancer := range balancers {
		b.balancers[balancer.Service()] = balancer
	}
	return b
}

type resolverBuilder struct {
	balancers map[string]*lb.LoadBalancer
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
	r.serviceConfig = cc.ParseServiceConfig(`{"loadBalancingConfig":[{"` + Name + `":{}}]}`)
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
