package lb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNoHealthyServers is returned by a pick when no endpoint may take
// traffic. The returned error wraps it and names the service.
var ErrNoHealthyServers = errors.New("no healthy servers")

// ErrUnknownServer is returned when an operation names an endpoint id that
// the LoadBalancer does not have.
var ErrUnknownServer = errors.New("unknown server")

// ErrDuplicateServer is returned by AddServer for an id already present.
var ErrDuplicateServer = errors.New("duplicate server")

// LoadBalancer spreads picks over a service's endpoints with a Strategy,
// skipping unhealthy ones, and keeps sticky sessions, in-flight counts and
// statistics. All methods are safe for concurrent use. Picks are lock-free;
// changes (AddServer, RemoveServer, SetHealth) serialise on a mutex and
// publish a new immutable snapshot.
type LoadBalancer struct {
	// rules is what the configuration makes of the endpoints; Reconfigure
	// swaps it whole.
	rules       atomic.Pointer[rules]
	service     string
	seed        uint64
	oneStripe   bool      // seeded: counters on one stripe, for repeatable runs
	published   *snapshot // the last snapshot built (noteReturns compares with it); guarded by mu
	events      func(Event)
	noneHealthy func()
	log         *slog.Logger
	now         func() int64

	mu        sync.Mutex // serialises writers; readers use snap
	endpoints map[string]*Endpoint
	// discovered is the last list Sync was given, whole, for a change of
	// subset to choose from again; drawnIndex is the client's index in
	// the fleet when the subset block gives none.
	discovered  []EndpointSpec
	drawnIndex  int
	snap        atomic.Pointer[snapshot]
	subscribers map[int]func([]*Endpoint)
	nextSub     int

	_     cacheLinePad
	total atomic.Int64
	// limited and waiting are the calls in flight and waiting for a
	// connection that the circuit breakers count (max_requests,
	// max_pending).
	_       cacheLinePad
	limited atomic.Int64
	_       cacheLinePad
	waiting atomic.Int64
}

// rules is what a LoadBalancer does with its endpoints, made from one
// Config. A pick reads the rules of the snapshot it picks from; an
// outcome, those current when it arrives.
type rules struct {
	cfg      Config
	strategy Strategy
	// observer is the strategy when it learns from outcomes; trackLoad
	// keeps each endpoint's in-flight word when the strategy or the limits
	// read it.
	observer  OutcomeObserver
	trackLoad bool
	// countTotal keeps total, the calls in flight on every endpoint, for
	// bounded-load hashing.
	countTotal bool
	hashes     bool // the strategy hashes each call's key
	// limits are the circuit breakers and rate limit; nil when none.
	limits   *limits
	outliers *outlierDetector // nil without outlier detection
	sessions *sessionTable    // nil unless sticky sessions are on
	// zoneSeeds seeds the random draws of zones (Locality).
	zoneSeeds splitmix
	// settling is set once a reconfiguration changed what is counted in
	// flight: a call picked under the old rules may end under the new, so
	// its end takes one off each count only while the count is above zero
	// (see releaseSettling).
	settling bool
}

// snapshot is an immutable view of the endpoints, swapped whole on change.
// Its picker is built once, by the writer that publishes it or, after
// AddEndpoint and RemoveServer, by the first pick.
type snapshot struct {
	// stale marks the placeholder a single add or removal publishes when
	// nothing subscribes to membership: the next reader builds the real
	// snapshot, so adding endpoints one at a time costs O(1) each.
	stale    bool
	all      []*Endpoint // sorted by ID
	eligible []*Endpoint // not unhealthy, sorted by ID
	rules    *rules
	// panic is set when too few endpoints may take traffic and eligible
	// holds them all (see Config.PanicThreshold).
	panic bool
	// rampUntil is when the last slow start of an eligible endpoint ends;
	// zero when none is warming.
	rampUntil int64
	lb        *LoadBalancer
	once      sync.Once
	built     atomic.Pointer[builtPicker]
}

// builtPicker holds a snapshot's picker; p is nil when eligible is empty.
type builtPicker struct{ p Picker }

// getPicker returns the snapshot's picker, building it on first use.
func (s *snapshot) getPicker() Picker {
	if b := s.built.Load(); b != nil {
		return b.p
	}
	s.once.Do(s.build)
	return s.built.Load().p
}

func (s *snapshot) build() {
	b := &builtPicker{}
	switch h, hashed := s.rules.strategy.(*hashing); {
	case len(s.eligible) == 0:
	case hashed:
		b.p = h.newPickerOver(s.all, s.eligible, s.lb)
	default:
		b.p = s.rules.newPicker(s.all, s.eligible, s.panic)
		if s.lb != nil {
			b.p = s.wrapRamp(b.p, s.lb)
		}
	}
	s.built.Store(b)
}

// Option adjusts a LoadBalancer at construction.
type Option func(*options)

type options struct {
	now       func() time.Time
	seed      uint64
	strategy  Strategy
	events    func(Event)
	noHealthy func()
}

// Event is something the balancer did to an endpoint on its own: an
// ejection by outlier detection and its end.
type Event struct {
	Endpoint string
	What     string
}

// WithEvents calls fn with every Event, as it happens; fn runs with the
// balancer's lock held, so it must be quick and must not call back into
// the LoadBalancer. The simulator shows them in its report.
func WithEvents(fn func(Event)) Option { return func(o *options) { o.events = fn } }

// event logs what the balancer did and tells the WithEvents hook.
func (lb *LoadBalancer) event(e *Endpoint, what string) {
	lb.log.Info("server "+what, "server", e.ID, "address", e.Address)
	if lb.events != nil {
		lb.events(Event{Endpoint: e.ID, What: what})
	}
}

// WhenNoneHealthy calls fn each time a pick finds no endpoint that may
// take traffic, from the picking goroutine: it must return at once. The
// service layer asks discovery to resolve again then, as grpc-go asks its
// resolver when a channel has nothing to connect to.
func WhenNoneHealthy(fn func()) Option { return func(o *options) { o.noHealthy = fn } }

// WithStrategy makes the LoadBalancer pick with s instead of the strategy
// its configuration names; a Strategy that implements OutcomeObserver is
// told every call's outcome.
func WithStrategy(s Strategy) Option { return func(o *options) { o.strategy = s } }

// WithClock replaces the wall clock used for session expiry; the simulator
// passes its simulated clock.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithSeed makes the strategy's random choices, and the statistics of a
// single-threaded caller such as the simulator, repeatable.
func WithSeed(seed uint64) Option { return func(o *options) { o.seed = seed } }

// NewLoadBalancer returns an empty LoadBalancer configured the original
// design's way. A nil config means DefaultLoadBalancerConfig(); a nil logger
// discards logs.
func NewLoadBalancer(config *LoadBalancerConfig, logger *slog.Logger, opts ...Option) (*LoadBalancer, error) {
	if config == nil {
		config = DefaultLoadBalancerConfig()
	}
	if err := config.validate(); err != nil {
		return nil, fmt.Errorf("load balancer config: %w", err)
	}
	return New(config.Config(), logger, opts...)
}

// New returns an empty LoadBalancer; a nil logger discards logs.
func New(config Config, logger *slog.Logger, opts ...Option) (*LoadBalancer, error) {
	if err := config.validate(); err != nil {
		return nil, fmt.Errorf("load balancer config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	// One clock for the balancer and its strategy, so that times one
	// writes (a load report's) the other can compare.
	now := monotonicNow()
	if o.now != nil {
		now = func() int64 { return o.now().UnixNano() }
	}
	lb := &LoadBalancer{
		service:     config.Service,
		seed:        o.seed,
		oneStripe:   o.seed != 0,
		events:      o.events,
		noneHealthy: o.noHealthy,
		now:         now,
		log:         logger.With("service", config.Service),
		endpoints:   make(map[string]*Endpoint),
	}
	lb.drawnIndex = subsetIndex(&SubsetConfig{}, o.seed)
	r, err := lb.newRules(config, nil, o.strategy)
	if err != nil {
		return nil, fmt.Errorf("load balancer config: %w", err)
	}
	lb.rules.Store(r)
	lb.snap.Store(&snapshot{rules: r})
	return lb, nil
}

// newPicker builds the picker over eligible, the endpoints that may take
// traffic among all: by zone first when a locality block says so (not in
// panic mode, as Envoy does), then by the strategy.
func (r *rules) newPicker(all, eligible []*Endpoint, panicking bool) Picker {
	return r.newPickerWithin(all, eligible, eligible, panicking)
}

// newPickerWithin is newPicker over allowed, some of eligible (a
// channel's READY endpoints): the zones' shares follow health, as
// Envoy's do, not connection state, so that connecting spills nothing.
func (r *rules) newPickerWithin(all, eligible, allowed []*Endpoint, panicking bool) Picker {
	if l := r.cfg.Locality; l != nil && !panicking {
		if groups := l.localityShares(all, eligible); groups != nil {
			if len(allowed) != len(eligible) {
				groups = keepOnly(groups, allowed)
			}
			return newLocalityPicker(groups, allowed, r.strategy.NewPicker, &r.zoneSeeds)
		}
	}
	return r.strategy.NewPicker(allowed)
}

// countsService and countsPending report whether the rules count the
// service's calls in flight and waiting.
func (r *rules) countsService() bool { return r.limits != nil && r.limits.maxRequests != 0 }
func (r *rules) countsPending() bool { return r.limits != nil && r.limits.maxPending != 0 }

// newRules makes the rules of config. Over prev, the rules running, it
// keeps what config does not change: the strategy with what it learnt,
// the sessions, the limits with their counts, the outlier detector's
// ejections. A custom strategy (WithStrategy) is kept while the strategy
// block is unchanged.
func (lb *LoadBalancer) newRules(config Config, prev *rules, custom Strategy) (*rules, error) {
	r := &rules{cfg: config, strategy: custom}
	r.zoneSeeds.seeded = lb.seed != 0
	r.zoneSeeds.state.Store(lb.seed)
	if prev != nil && reflect.DeepEqual(prev.cfg.Strategy, config.Strategy) {
		r.strategy = prev.strategy
	}
	if r.strategy == nil {
		var err error
		r.strategy, err = NewStrategy(config.Strategy, StrategyOptions{Seed: lb.seed, Now: lb.now})
		if err != nil {
			return nil, err
		}
	}
	r.observer, _ = r.strategy.(OutcomeObserver)
	if rl, ok := r.strategy.(interface{ readsLoad() bool }); ok {
		r.trackLoad = rl.readsLoad()
	}
	if h, ok := r.strategy.(*hashing); ok {
		r.hashes, r.countTotal = true, h.balanceFactor != 0
	}
	switch {
	case prev != nil && reflect.DeepEqual(prev.cfg.CircuitBreakers, config.CircuitBreakers) && reflect.DeepEqual(prev.cfg.RateLimit, config.RateLimit):
		r.limits = prev.limits
	default:
		r.limits = newLimits(config.CircuitBreakers, config.RateLimit, &lb.limited, &lb.waiting)
		if prev != nil && prev.limits != nil && r.limits != nil {
			r.limits.carryOver(prev.limits)
		}
	}
	if r.limits != nil {
		r.trackLoad = true // caps read each endpoint's calls in flight
	}
	switch {
	case !config.Sticky.Enabled:
	case prev != nil && prev.sessions != nil && prev.cfg.Sticky == config.Sticky:
		r.sessions = prev.sessions
	default:
		r.sessions = newSessionTable(int64(config.Sticky.TTL))
	}
	if od := config.OutlierDetection; od != nil {
		r.outliers = newOutlierDetector(*od, lb.now, lb.seed)
		if prev != nil && prev.outliers != nil {
			// Ejections run on under the new settings.
			r.outliers.state = prev.outliers.state
		}
	}
	if prev != nil {
		r.settling = prev.settling || prev.trackLoad != r.trackLoad || prev.countTotal != r.countTotal ||
			prev.countsService() != r.countsService() || prev.countsPending() != r.countsPending()
	}
	return r, nil
}

// Config returns the configuration the LoadBalancer runs with.
func (lb *LoadBalancer) Config() Config { return lb.rules.Load().cfg }

// Outcomes returns how the balancer classifies calls' results.
func (lb *LoadBalancer) Outcomes() OutcomeConfig { return lb.rules.Load().cfg.Outcomes }

// Panicking reports whether the balancer is in panic mode: fewer endpoints
// may take traffic than the panic threshold, so it balances over all.
func (lb *LoadBalancer) Panicking() bool { return lb.current().panic }

// Service returns the name of the balanced service.
func (lb *LoadBalancer) Service() string { return lb.rules.Load().cfg.Service }

// AddServer adds an endpoint with health Unknown. It is the original
// design's signature; AddEndpoint takes zone and metadata too.
func (lb *LoadBalancer) AddServer(id, host string, port, weight int) error {
	return lb.AddEndpoint(EndpointSpec{ID: id, Host: host, Port: port, Weight: weight})
}

// AddEndpoint adds an endpoint with health Unknown.
func (lb *LoadBalancer) AddEndpoint(spec EndpointSpec) error {
	if err := spec.validate(); err != nil {
		return err
	}
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if _, ok := lb.endpoints[spec.ID]; ok {
		return fmt.Errorf("%w %q in service %q", ErrDuplicateServer, spec.ID, lb.service)
	}
	e := newEndpoint(spec)
	lb.endpoints[spec.ID] = e
	lb.membershipChanged()
	lb.log.Debug("server added", "server", spec.ID, "address", e.Address, "weight", spec.Weight)
	return nil
}

// Sync makes the endpoint set exactly specs, as a discovery snapshot says:
// new ids are added (health Unknown), missing ones removed, and those whose
// address, weight, zone or metadata changed are replaced. Unchanged
// endpoints keep their health and counters. One snapshot is published, so a
// pick never sees half an update.
func (lb *LoadBalancer) Sync(specs []EndpointSpec) error {
	want := make(map[string]EndpointSpec, len(specs))
	for _, spec := range specs {
		if err := spec.validate(); err != nil {
			return err
		}
		if _, dup := want[spec.ID]; dup {
			return fmt.Errorf("%w %q in one discovery snapshot of service %q", ErrDuplicateServer, spec.ID, lb.service)
		}
		want[spec.ID] = spec
	}
	lb.mu.Lock()
	defer lb.mu.Unlock()
	lb.discovered = slices.Clone(specs)
	if sub := lb.rules.Load().cfg.Subset; sub != nil {
		index := lb.drawnIndex
		if sub.ClientIndex != nil {
			index = *sub.ClientIndex
		}
		chosen := chooseSubset(specs, sub.Size, index)
		if len(lb.endpoints) == 0 || len(chosen) != len(lb.endpoints) {
			lb.log.Info("subset of the servers", "kept", len(chosen), "of", len(specs), "client_index", index)
		}
		want = make(map[string]EndpointSpec, len(chosen))
		for _, spec := range chosen {
			want[spec.ID] = spec
		}
		specs = chosen
	}
	changed, healthChanged := false, false
	// The first endpoints a service finds are one line; later changes a
	// line per endpoint.
	first := len(lb.endpoints) == 0
	var gone []*Endpoint
	for id, e := range lb.endpoints {
		spec, keep := want[id]
		if keep && sameEndpoint(e, spec) {
			delete(want, id)
			if old := HealthStatus(e.discovery.Swap(int32(spec.Health))); old != spec.Health {
				healthChanged = true
				lb.log.Info("server health changed by discovery", "server", id, "address", e.Address, "from", old, "to", spec.Health)
			}
			continue
		}
		e.removed.Store(true)
		delete(lb.endpoints, id)
		gone = append(gone, e)
		changed = true
		if !keep {
			lb.log.Info("server removed by discovery", "server", id, "address", e.Address)
		}
	}
	replaced := make(map[string]bool, len(gone))
	for _, g := range gone {
		replaced[g.ID] = true
	}
	for id, spec := range want {
		e := newEndpoint(spec)
		lb.endpoints[id] = e
		changed = true
		switch {
		case first:
		case replaced[id]:
			lb.log.Info("server changed by discovery", "server", id, "address", e.Address, "weight", e.Weight, "zone", e.Zone)
		default:
			lb.log.Info("server added by discovery", "server", id, "address", e.Address)
		}
	}
	if first && len(specs) > 0 {
		lb.log.Info("servers discovered", "endpoints", len(specs))
	}
	if !changed {
		if healthChanged {
			lb.publish(lb.allLocked(), true)
		}
		return nil
	}
	lb.publishMembership(lb.sortedEndpoints(), true)
	if sessions := lb.rules.Load().sessions; sessions != nil {
		for _, e := range gone {
			sessions.forget(e)
		}
	}
	lb.log.Debug("endpoints synced", "endpoints", len(lb.endpoints), "replaced_or_removed", len(gone))
	return nil
}

func sameEndpoint(e *Endpoint, s EndpointSpec) bool {
	return e.Host == s.Host && e.Port == s.Port && e.Weight == s.Weight && e.Zone == s.Zone && maps.Equal(e.Metadata, s.Metadata)
}

// RemoveServer removes an endpoint. Picks already made stay valid; sessions
// bound to it move on their next pick.
func (lb *LoadBalancer) RemoveServer(id string) error {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	e, ok := lb.endpoints[id]
	if !ok {
		return fmt.Errorf("%w %q in service %q", ErrUnknownServer, id, lb.service)
	}
	e.removed.Store(true)
	delete(lb.endpoints, id)
	lb.membershipChanged()
	if sessions := lb.rules.Load().sessions; sessions != nil {
		sessions.forget(e)
	}
	lb.log.Debug("server removed", "server", id)
	return nil
}

// SetHealth records an endpoint's health. A change in whether it may take
// traffic publishes a new snapshot at once.
func (lb *LoadBalancer) SetHealth(id string, status HealthStatus) error {
	if status < HealthUnknown || status > HealthUnhealthy {
		return fmt.Errorf("set health of %q: invalid status %d", id, status)
	}
	lb.mu.Lock()
	defer lb.mu.Unlock()
	e, ok := lb.endpoints[id]
	if !ok {
		return fmt.Errorf("%w %q in service %q", ErrUnknownServer, id, lb.service)
	}
	before := e.Health()
	old := HealthStatus(e.health.Swap(int32(status)))
	if old == status {
		return nil
	}
	if (before == HealthUnhealthy) != (e.Health() == HealthUnhealthy) {
		lb.publish(lb.allLocked(), true)
	}
	lb.log.Info("server health changed", "server", id, "from", old, "to", status)
	return nil
}

// Endpoint returns the endpoint with the given id.
func (lb *LoadBalancer) Endpoint(id string) (*Endpoint, bool) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	e, ok := lb.endpoints[id]
	return e, ok
}

// Endpoints returns every endpoint, sorted by id.
func (lb *LoadBalancer) Endpoints() []*Endpoint {
	return slices.Clone(lb.current().all)
}

// stalePlaceholder is the snapshot published while a rebuild is pending.
var stalePlaceholder = &snapshot{stale: true}

// current returns the snapshot, building it first if a single add or
// removal left it stale. Only the first reader after such changes takes the
// lock.
func (lb *LoadBalancer) current() *snapshot {
	if s := lb.snap.Load(); !s.stale {
		return s
	}
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.snap.Load().stale {
		lb.publish(lb.sortedEndpoints(), false)
	}
	return lb.snap.Load()
}

// allLocked returns every endpoint sorted by id; the caller holds lb.mu.
func (lb *LoadBalancer) allLocked() []*Endpoint {
	if s := lb.snap.Load(); !s.stale {
		return s.all
	}
	return lb.sortedEndpoints()
}

// membershipChanged follows one add or removal; the caller holds lb.mu.
// Subscribers must hear of it now; without them the rebuild waits for the
// next reader.
func (lb *LoadBalancer) membershipChanged() {
	if len(lb.subscribers) == 0 {
		lb.snap.Store(stalePlaceholder)
		return
	}
	lb.publishMembership(lb.sortedEndpoints(), false)
}

// sortedEndpoints lists every endpoint sorted by id; the caller holds lb.mu.
func (lb *LoadBalancer) sortedEndpoints() []*Endpoint {
	all := make([]*Endpoint, 0, len(lb.endpoints))
	for _, e := range lb.endpoints {
		all = append(all, e)
	}
	slices.SortFunc(all, func(a, b *Endpoint) int { return strings.Compare(a.ID, b.ID) })
	return all
}

// publish stores a new snapshot over all, which is sorted by id and is not
// modified afterwards; the caller holds lb.mu. With eager, the writer
// builds the picker now rather than leaving it to the next pick.
func (lb *LoadBalancer) publish(all []*Endpoint, eager bool) {
	r := lb.rules.Load()
	s := &snapshot{all: all, rules: r}
	for _, e := range all {
		if e.Health() != HealthUnhealthy && !e.ejected.Load() {
			s.eligible = append(s.eligible, e)
		}
	}
	// Panic mode, as Envoy's: with too few endpoints left, balance over all
	// of them rather than pile every call onto the few.
	healthy := len(s.eligible)
	if t := r.cfg.PanicThreshold; t > 0 && len(all) > 0 && float64(healthy)*100 < t*float64(len(all)) {
		s.eligible, s.panic = all, true
	}
	if was := lb.snap.Load(); s.panic != was.panic && !was.stale {
		if s.panic {
			lb.log.Info("panic mode: too few endpoints may take traffic, balancing over all", "eligible", healthy, "endpoints", len(all), "panic_threshold", r.cfg.PanicThreshold)
		} else {
			lb.log.Info("panic mode over", "endpoints", len(all))
		}
	}
	s.lb = lb
	lb.noteReturns(lb.published, s)
	lb.published = s
	if eager {
		s.getPicker()
	}
	lb.snap.Store(s)
}

// publishMembership publishes a snapshot after endpoints were added or
// removed, and tells the subscribers; the caller holds lb.mu.
func (lb *LoadBalancer) publishMembership(all []*Endpoint, eager bool) {
	lb.publish(all, eager)
	for _, fn := range lb.subscribers {
		fn(all)
	}
}

// Subscribe calls fn with every endpoint now, and again whenever an
// endpoint is added or removed or the configuration changes (Reconfigure),
// until the returned cancel is called. fn runs with the LoadBalancer's
// write lock held, so it must be quick and must not call the
// LoadBalancer's AddServer, RemoveServer or SetHealth; the connection
// pool and the health checker use it to follow membership, the pvlb:///
// channel to follow the configuration too.
func (lb *LoadBalancer) Subscribe(fn func(all []*Endpoint)) (cancel func()) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.subscribers == nil {
		lb.subscribers = map[int]func([]*Endpoint){}
	}
	id := lb.nextSub
	lb.nextSub++
	lb.subscribers[id] = fn
	all := lb.allLocked()
	if lb.snap.Load().stale {
		lb.publish(all, false)
	}
	fn(all)
	return func() {
		lb.mu.Lock()
		delete(lb.subscribers, id)
		lb.mu.Unlock()
	}
}

// Pick chooses an endpoint for one call and counts it in flight; the caller
// must end it with Done (or Release) when the call ends. The session id from WithSession is
// honoured when sticky sessions are on.
func (lb *LoadBalancer) Pick(ctx context.Context) (*Endpoint, error) {
	return lb.PickExcluding(ctx, nil)
}

// PickExcluding is Pick for a retry: it avoids the endpoints in tried while
// any other endpoint may take traffic.
func (lb *LoadBalancer) PickExcluding(ctx context.Context, tried []*Endpoint) (*Endpoint, error) {
	return lb.pick(ctx, callKey{}, tried)
}

// PickHash is PickExcluding for a call whose key hashes to hash (see
// HashKey.Hash), which ring_hash and maglev map to its endpoint; other
// strategies ignore it.
func (lb *LoadBalancer) PickHash(ctx context.Context, hash uint64, tried []*Endpoint) (*Endpoint, error) {
	return lb.pick(ctx, callKey{hash, true}, tried)
}

// callKey is a call's hash key when its caller knows it; otherwise the
// call's context may carry one (RequestHash).
type callKey struct {
	hash uint64
	set  bool
}

func (lb *LoadBalancer) pick(ctx context.Context, key callKey, tried []*Endpoint) (*Endpoint, error) {
	s := lb.snap.Load()
	if s.stale {
		s = lb.current()
	}
	picker := s.getPicker()
	if picker == nil && s.rules.outliers != nil {
		// Every endpoint may be ejected, with no call left to end the
		// interval: the pick does.
		lb.sweepOutliers(s.rules.outliers, lb.now())
		s = lb.current()
		picker = s.getPicker()
	}
	if picker == nil {
		return nil, lb.noHealthy(s)
	}
	r := s.rules
	if r.sessions != nil || r.limits != nil || r.hashes {
		if hp, ok := picker.(*hashPicker); ok && key.set && r.limits == nil {
			// A keyed pick without limits: the table lookup and nothing else.
			e := hp.pickHash(key.hash, tried, nil)
			lb.acquire(r, e)
			return e, nil
		}
		return lb.pickFrom(ctx, r, picker, nil, key, tried)
	}
	e := picker.Pick(tried)
	lb.acquire(r, e)
	return e, nil
}

// pickFrom picks with picker, honouring a sticky session or, for a
// hashing strategy, the call's key, with an endpoint in allowed (nil
// allows all), and counts the pick; with circuit breakers or a rate
// limit, it skips endpoints at their cap.
func (lb *LoadBalancer) pickFrom(ctx context.Context, r *rules, picker Picker, allowed map[*Endpoint]bool, key callKey, tried []*Endpoint) (*Endpoint, error) {
	var e *Endpoint
	hp, hashed := picker.(*hashPicker)
	switch {
	case hashed:
		if !key.set {
			key.hash, key.set = RequestHash(ctx)
		}
		if !key.set {
			key.hash = hp.rnd.next()
		}
		if e = hp.pickHash(key.hash, tried, allowed); e == nil {
			return nil, ErrNoneAllowed
		}
	case r.sessions != nil:
		if id, ok := SessionFromContext(ctx); ok {
			e = lb.pickSticky(r.sessions, picker, allowed, id, tried)
		}
	}
	if e == nil {
		e = picker.Pick(tried)
	}
	if r.limits == nil {
		lb.acquire(r, e)
		return e, nil
	}
	if hashed {
		// Past a full endpoint, the key walks on to the next, as past an
		// unhealthy one.
		return lb.pickWithin(r, func(skip []*Endpoint) *Endpoint { return hp.pickHash(key.hash, skip, allowed) }, e, tried)
	}
	return lb.pickWithin(r, picker.Pick, e, tried)
}

// pickWithin admits the picked endpoint e under the limits, or picks again
// with next without it, and the others at their cap, until one is
// admitted or next has nothing new to offer.
func (lb *LoadBalancer) pickWithin(r *rules, next func(skip []*Endpoint) *Endpoint, e *Endpoint, tried []*Endpoint) (*Endpoint, error) {
	l := r.limits
	if !l.admitService() {
		l.overloaded.Add(1)
		return nil, fmt.Errorf("%w: service %q has %d calls in flight, its circuit breaker's max_requests", ErrOverloaded, lb.service, l.maxRequests)
	}
	var now int64
	if l.interval != 0 {
		now = lb.now()
	}
	if l.admit(e, now) {
		lb.admitted(r)
		return e, nil
	}
	// The rare path: skip what is full until the picker offers only what
	// was skipped already (it avoids the skipped while any other may take
	// traffic).
	skipped := append(append(make([]*Endpoint, 0, len(tried)+4), tried...), e)
	for {
		e = next(skipped)
		if e == nil || slices.Contains(skipped, e) {
			break
		}
		if l.admit(e, now) {
			lb.admitted(r)
			return e, nil
		}
		skipped = append(skipped, e)
	}
	l.releaseService() // the place this pick took
	l.overloaded.Add(1)
	return nil, fmt.Errorf("%w: every endpoint of service %q that may take traffic is at its circuit breaker's max_requests_per_endpoint or out of its rate_limit", ErrOverloaded, lb.service)
}

// admitted counts a pick the limits admitted (and counted on its
// endpoint) in the service's total.
func (lb *LoadBalancer) admitted(r *rules) {
	if r.countTotal {
		lb.total.Add(1)
	}
}

func (lb *LoadBalancer) pickSticky(sessions *sessionTable, picker Picker, allowed map[*Endpoint]bool, id string, triedList []*Endpoint) *Endpoint {
	now := lb.now()
	if e := sessions.lookup(id, now); e != nil && e.usable() && !tried(triedList, e) && (allowed == nil || allowed[e]) {
		return e
	}
	e := picker.Pick(triedList)
	sessions.bind(id, e, now)
	return e
}

func (lb *LoadBalancer) noHealthy(s *snapshot) error {
	if lb.noneHealthy != nil {
		lb.noneHealthy()
	}
	why := fmt.Sprintf("all %d endpoints are unhealthy", len(s.all))
	switch len(s.all) {
	case 0:
		why = "it has no endpoints"
	case 1:
		why = "its only endpoint is unhealthy"
	}
	return fmt.Errorf("%w for service %q (%s)", ErrNoHealthyServers, lb.service, why)
}
