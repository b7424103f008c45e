package grpcpolicy

import (
	"context"
	"errors"
	"sync"
	"time"

	v3orcapb "github.com/cncf/xds/go/xds/data/orca/v3"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/orca" // also parses the load reports in calls' trailers into DoneInfo.ServerLoad
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"

	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/orcaload"
	"github.com/peervault/pvlb/pkg/statuscode"
)

// Name is the grpc-go load balancing policy that picks with a
// LoadBalancer; the pvlb resolver selects it.
const Name = "pvlb"

func init() {
	balancer.Register(balancerBuilder{})
}

type balancerBuilder struct{}

func (balancerBuilder) Name() string { return Name }

func (balancerBuilder) Build(cc balancer.ClientConn, _ balancer.BuildOptions) balancer.Balancer {
	return &grpcBalancer{cc: cc, subConns: map[*lb.Endpoint]*subConn{}}
}

// grpcBalancer keeps one subchannel per endpoint and hands grpc-go a picker
// that asks the LoadBalancer: the same strategy code, health state and
// sticky sessions as LoadBalancedClient. Subchannels that are not READY
// are passed to the strategy as already tried, so it avoids them.
type grpcBalancer struct {
	cc balancer.ClientConn

	mu       sync.Mutex
	balancer *lb.LoadBalancer
	subConns map[*lb.Endpoint]*subConn
	lastErr  error
	closed   bool
}

type subConn struct {
	sc    balancer.SubConn
	state connectivity.State
	// stopLoad ends the subchannel's out-of-band load reports, asked for
	// every loadPeriod; nil
	// without them.
	stopLoad   func()
	loadPeriod time.Duration
}

// shutdown ends the subchannel and its load reports.
func (s *subConn) shutdown() {
	if s.stopLoad != nil {
		s.stopLoad()
	}
	s.sc.Shutdown()
}

// loadListener hands an endpoint's out-of-band load reports to the core.
type loadListener struct {
	balancer *lb.LoadBalancer
	endpoint *lb.Endpoint
}

func (l loadListener) OnLoadReport(r *v3orcapb.OrcaLoadReport) {
	l.balancer.ReportLoad(l.endpoint, orcaload.FromProto(r))
}

// callDone carries one pick to its Done callback: the endpoint, when the
// call started, and the callback itself, bound once when the carrier is
// made. Carriers are pooled, so that a pick allocates no closure.
type callDone struct {
	balancer    *lb.LoadBalancer
	endpoint    *lb.Endpoint
	started     time.Duration // since epoch
	loadPerCall bool          // hand the trailers' load report to the balancer
	fn          func(balancer.DoneInfo)
}

// epoch anchors call timings: time.Since reads only the monotonic clock,
// about half the cost of time.Now on virtual machines.
var epoch = time.Now()

var callDones sync.Pool

func getCallDone() *callDone {
	if d, ok := callDones.Get().(*callDone); ok {
		return d
	}
	d := &callDone{}
	d.fn = d.done
	return d
}

// done reports the call's outcome to the core, as LoadBalancedClient does.
func (d *callDone) done(info balancer.DoneInfo) {
	outcome := lb.Success
	if info.Err != nil {
		code := status.Code(info.Err)
		outcome = d.balancer.Outcomes().Classify(statuscode.Code(code), errors.Is(info.Err, context.Canceled))
	}
	if r, ok := info.ServerLoad.(*v3orcapb.OrcaLoadReport); ok && r != nil && d.loadPerCall {
		d.balancer.ReportLoad(d.endpoint, orcaload.FromProto(r))
	}
	d.balancer.Done(d.endpoint, time.Since(epoch)-d.started, outcome)
	d.balancer, d.endpoint = nil, nil
	callDones.Put(d)
}

func (b *grpcBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	core, _ := s.ResolverState.Attributes.Value(balancerKey{}).(*lb.LoadBalancer)
	if core == nil {
		b.ResolverError(errors.New("pvlb balancer: the resolver state carries no pvlb LoadBalancer; use grpcpolicy.NewResolverBuilder"))
		return balancer.ErrBadResolverState
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.balancer = core
	present := map[*lb.Endpoint]bool{}
	for _, re := range s.ResolverState.Endpoints {
		e, _ := re.Attributes.Value(endpointKey{}).(*lb.Endpoint)
		if e == nil || len(re.Addresses) == 0 {
			continue
		}
		present[e] = true
		if _, ok := b.subConns[e]; ok {
			continue
		}
		entry := &subConn{state: connectivity.Idle}
		// One address per subchannel, as grpc-go's notice asks; it offers
		// no other way for a policy that owns its subchannels.
		//lint:ignore SA1019 see above
		sc, err := b.cc.NewSubConn(re.Addresses[:1], balancer.NewSubConnOptions{
			StateListener: func(st balancer.SubConnState) { b.subConnStateChanged(e, entry, st) },
		})
		if err != nil {
			continue
		}
		entry.sc = sc
		b.subConns[e] = entry
		sc.Connect()
	}
	for e, entry := range b.subConns {
		if !present[e] {
			entry.shutdown()
			delete(b.subConns, e)
			continue
		}
		// The balancer's configuration may have changed (Reconfigure):
		// out-of-band load reports open, close or change period.
		b.followLoad(e, entry)
	}
	b.publishLocked()
	return nil
}

func (b *grpcBalancer) subConnStateChanged(e *lb.Endpoint, entry *subConn, st balancer.SubConnState) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.subConns[e] != entry {
		return
	}
	entry.state = st.ConnectivityState
	b.followLoad(e, entry)
	switch st.ConnectivityState {
	case connectivity.Idle:
		entry.sc.Connect() // reconnect eagerly, as round_robin does
	case connectivity.TransientFailure:
		b.lastErr = st.ConnectionError
	case connectivity.Shutdown:
		return
	}
	b.publishLocked()
}

// followLoad opens ORCA's out-of-band stream of load reports on a
// subchannel that turned READY, as grpc-go's weighted_round_robin does
// with enable_oob_load_report, and closes it when the subchannel leaves
// READY.
func (b *grpcBalancer) followLoad(e *lb.Endpoint, entry *subConn) {
	period, ok := b.balancer.LoadReports()
	if !ok {
		period = 0
	}
	if entry.stopLoad != nil && (entry.state != connectivity.Ready || period != entry.loadPeriod) {
		entry.stopLoad()
		entry.stopLoad = nil
	}
	if entry.state == connectivity.Ready && period > 0 && entry.stopLoad == nil {
		entry.stopLoad = orca.RegisterOOBListener(entry.sc, loadListener{b.balancer, e}, orca.OOBListenerOptions{ReportInterval: period})
		entry.loadPeriod = period
	}
}

// publishLocked gives the channel a picker for the current subchannel
// states and an overall state.
func (b *grpcBalancer) publishLocked() {
	p := &grpcPicker{balancer: b.balancer, ready: map[*lb.Endpoint]*subConn{}, readsRequest: b.balancer.ReadsRequest()}
	if oob, ok := b.balancer.LoadReports(); ok && oob == 0 {
		p.loadPerCall = true
	}
	var connecting, failing int
	// A hashing strategy keeps a key on its endpoint while that one
	// connects, as grpc-go's ring_hash does: the call waits for it rather
	// than move. Only an endpoint failing to connect is walked past.
	var allowed []*lb.Endpoint
	hashes := b.balancer.HashesKeys()
	for e, entry := range b.subConns {
		switch entry.state {
		case connectivity.Ready:
			p.ready[e] = entry
			allowed = append(allowed, e)
		case connectivity.Connecting, connectivity.Idle:
			connecting++
			if hashes {
				allowed = append(allowed, e)
			}
		default:
			failing++
		}
	}
	state := connectivity.Idle
	switch {
	case len(p.ready) > 0:
		state = connectivity.Ready
	case connecting > 0:
		state = connectivity.Connecting
	case failing > 0:
		state = connectivity.TransientFailure
	}
	p.connecting = connecting > 0
	p.subset = b.balancer.NewSubset()
	p.subset.Allow(allowed)
	p.lastErr = b.lastErr
	b.cc.UpdateState(balancer.State{ConnectivityState: state, Picker: p})
}

func (b *grpcBalancer) ResolverError(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.subConns) == 0 {
		b.cc.UpdateState(balancer.State{
			ConnectivityState: connectivity.TransientFailure,
			Picker:            errPicker{status.Errorf(codes.Unavailable, "pvlb resolver: %v", err)},
		})
	}
}

func (b *grpcBalancer) UpdateSubConnState(balancer.SubConn, balancer.SubConnState) {} // StateListener is used instead

func (b *grpcBalancer) ExitIdle() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, entry := range b.subConns {
		if entry.state == connectivity.Idle {
			entry.sc.Connect()
		}
	}
}

func (b *grpcBalancer) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for e, entry := range b.subConns {
		entry.shutdown()
		delete(b.subConns, e)
	}
}

// grpcPicker is immutable: the balancer publishes a new one on every
// subchannel state change.
type grpcPicker struct {
	balancer *lb.LoadBalancer
	// readsRequest is set when picks read the call's metadata or method
	// (a sticky session key, a hash key); loadPerCall when the strategy
	// reads the load reports in calls' trailers.
	readsRequest, loadPerCall bool
	ready                     map[*lb.Endpoint]*subConn
	subset                    *lb.Subset // the endpoints in ready
	connecting                bool
	lastErr                   error
}

func (p *grpcPicker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	var tried []*lb.Endpoint
	attempt := lb.AttemptFromContext(info.Ctx) // set by rpc's channel interceptor
	if attempt != nil {
		tried = attempt.Tried
	}
	ctx := info.Ctx
	if p.readsRequest {
		md, _ := metadata.FromOutgoingContext(ctx)
		ctx = p.balancer.KeyedContext(ctx, info.FullMethodName, md.Get)
	}
	e, err := p.subset.Pick(ctx, tried)
	var ready *subConn
	if err == nil {
		ready = p.ready[e]
	}
	switch {
	case errors.Is(err, lb.ErrNoneAllowed), err == nil && ready == nil:
		// Every healthy endpoint is still connecting or failing.
		if e != nil {
			p.balancer.Release(e)
		}
		if p.connecting {
			// The call waits for a connection: pending, under max_pending,
			// when the call's attempt (rpc.ChannelCalls) lets it be counted.
			if attempt != nil && !attempt.Wait(p.balancer) {
				return balancer.PickResult{}, status.Error(codes.ResourceExhausted, p.balancer.ErrPendingFull().Error())
			}
			return balancer.PickResult{}, balancer.ErrNoSubConnAvailable
		}
		msg := "no ready connection to any healthy endpoint"
		if p.lastErr != nil {
			msg += ": " + p.lastErr.Error()
		}
		return balancer.PickResult{}, status.Error(codes.Unavailable, msg)
	case errors.Is(err, lb.ErrOverloaded):
		// The circuit breakers or the rate limit: fail now, do not queue.
		return balancer.PickResult{}, status.Error(codes.ResourceExhausted, err.Error())
	case err != nil:
		if len(p.ready) == 0 && p.connecting {
			return balancer.PickResult{}, balancer.ErrNoSubConnAvailable
		}
		return balancer.PickResult{}, status.Error(codes.Unavailable, err.Error())
	}
	if attempt != nil {
		attempt.Waited()
		if attempt.Picked != nil {
			attempt.Picked(e)
		}
	}
	d := getCallDone()
	d.balancer, d.endpoint, d.started, d.loadPerCall = p.balancer, e, time.Since(epoch), p.loadPerCall
	return balancer.PickResult{SubConn: ready.sc, Done: d.fn}, nil
}

type errPicker struct{ err error }

func (p errPicker) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	return balancer.PickResult{}, p.err
}

var _ resolver.Builder = (*resolverBuilder)(nil)
