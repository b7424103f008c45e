// Package sim is a discrete-event simulator of a client balancing traffic
// over a service's servers. It sends every request through a real
// lb.LoadBalancer (the pickers that serve real traffic) on a simulated
// clock, against servers with latency models, capacity and error rates,
// with health checks, retries and scripted outages. A run is deterministic
// for a seed.
package sim

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/peervault/pvlb/pkg/config"
	"github.com/peervault/pvlb/pkg/latency"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/policy"
	"github.com/peervault/pvlb/pkg/statuscode"
)

// Server is one simulated endpoint: the endpoint as discovery gives it (its
// health too), and how it behaves.
type Server struct {
	lb.EndpointSpec
	config.Behaviour
}

// Outage takes a server down from From to To after the start: its
// connections break, calls to it are refused and its health checks fail.
type Outage struct {
	Server   string
	From, To time.Duration
}

// Change is what happens to one server at At, as a scenario's step says.
type Change struct {
	Server string
	At     time.Duration
	// Behaviour, when set, is how the server behaves from At on.
	Behaviour *config.Behaviour
	// Discovered, when set, makes discovery stop reporting the server
	// (false: it leaves every client's balancer; its calls in flight
	// finish) or report it again (true: it joins).
	Discovered *bool
	// ColdStart starts a cold start at At, as the behaviour describes it.
	ColdStart bool
}

// RateChange sets an open-loop run's request rate from At on: at once, or
// moving linearly from the rate before to RPS over Ramp.
type RateChange struct {
	At   time.Duration
	RPS  float64
	Ramp time.Duration
}

// ConcurrencyChange sets a closed-loop run's requests in flight from At
// on: more start at once; when fewer, finished ones are not replaced
// until the run is down to the new number.
type ConcurrencyChange struct {
	At          time.Duration
	Concurrency int
}

// Config describes one simulation run.
type Config struct {
	// Balancer is what the service's LoadBalancer reads: strategy, sticky
	// sessions and outcome classification act as configured.
	Balancer lb.Config
	// StrategyName is the name of the strategy block Balancer's strategy
	// comes from, for the report; empty for a kind's defaults.
	StrategyName string
	// LocalZone is the client's zone, for the report's cross-zone share;
	// empty means Balancer.Locality's, if any. ClientZones spreads a fleet
	// of Clients over zones by weight, each client in its own (empty
	// means Balancer.Locality's); CrossZoneLatency is added to the time
	// of an attempt that leaves its client's zone.
	LocalZone        string
	ClientZones      map[string]float64
	CrossZoneLatency time.Duration
	// Scenario names the scenario the run follows, for the report.
	Scenario string
	// Health is the service's health checking; a zero Interval runs no
	// checks.
	Health policy.HealthCheck
	// Retry is how failed requests are retried, as the client would.
	Retry    policy.Retry
	Servers  []Server
	Requests int
	// RPS sends requests open-loop at this mean rate (Poisson arrivals).
	// Concurrency instead keeps that many requests in flight (closed
	// loop). Exactly one of them is set.
	RPS         float64
	Concurrency int
	// Sessions spreads requests over this many sticky session ids; zero
	// sends no session ids.
	Sessions int
	// Keys gives each request one of this many keys, which ring_hash and
	// maglev hash (other strategies ignore them) and servers with a cache
	// (Behaviour.CacheKeys) cache; zero sends no keys. KeySkew, when not
	// zero, draws keys from a Zipf distribution of that exponent (more
	// than 1: the larger, the more requests share the hottest keys)
	// rather than uniformly.
	Keys    int
	KeySkew float64
	// Clients is how many independent client balancers share the servers,
	// as that many application instances would, each with its own picker
	// state, sessions, outcomes and outlier detection (health checks are
	// alike for all: they see the same servers). Each request comes from
	// one of them at random. Zero means one.
	Clients int
	Outages []Outage
	// Changes change servers during the run, in time order per server.
	Changes []Change
	// Hedging, when set, hedges every request as the client's hedging
	// block would (the simulator has no methods to tell apart): a copy to
	// another server after Delay without an answer, or at once after a
	// non-fatal failure, up to MaxAttempts; the first answer wins. A hedged
	// request is not retried (gRFC A6: a method hedges or retries).
	Hedging *policy.Hedging
	// RateChanges change an open-loop run's request rate, in time order,
	// and ConcurrencyChanges a closed loop's requests in flight.
	RateChanges        []RateChange
	ConcurrencyChanges []ConcurrencyChange
	Seed               uint64
	// TimelineStep fixes the step of the report's time series. Zero
	// starts at MinTimelineStep and doubles it whenever the series would
	// pass MaxTimelinePoints, so that a run of any length gives between
	// half that and that many points.
	TimelineStep time.Duration
	// Progress, when set, is called now and then with the number of
	// requests finished so far.
	Progress func(done int)
	Logger   *slog.Logger
	// onFinish, for tests, sees each request end: its number, when it
	// arrived, and the service time drawn for its last attempt.
	onFinish func(id, start, service int64)
	// onPick, for tests, sees each attempt placed on a server (in flight
	// on it, queued included, counting the attempt).
	onPick func(s *simulation, server int32)
}

// UsesKeys reports whether the run's keys matter: the strategy hashes
// them or a server caches them.
func (c *Config) UsesKeys() bool {
	if k := c.Balancer.Strategy.Kind; k == lb.RingHash || k == lb.Maglev {
		return true
	}
	for _, s := range c.Servers {
		if s.CacheKeys > 0 {
			return true
		}
	}
	return false
}

func (c *Config) validate() error {
	switch {
	case len(c.Servers) == 0:
		return errors.New("no servers to simulate")
	case c.Requests < 1:
		return fmt.Errorf("requests must be at least 1, not %d", c.Requests)
	case c.Requests > MaxRequests:
		return fmt.Errorf("%d requests are more than a run holds (%d, about two minutes): send fewer (--requests, or a scenario's requests or duration), or at a lower rate for the same time", c.Requests, MaxRequests)
	case c.Concurrency > MaxConcurrency:
		return fmt.Errorf("a concurrency of %d is more than a run holds (%d in flight)", c.Concurrency, MaxConcurrency)
	case max(c.Clients, 1)*len(c.Servers) > MaxClientEndpoints:
		return fmt.Errorf("%d clients of %d servers are %d balancer entries, more than a run holds (%d, about a gigabyte): use fewer --clients; a few hundred show what a larger fleet does", max(c.Clients, 1), len(c.Servers), max(c.Clients, 1)*len(c.Servers), MaxClientEndpoints)
	case (c.RPS > 0) == (c.Concurrency > 0):
		return errors.New("set exactly one of a request rate (open loop) and a concurrency (closed loop)")
	case c.RPS < 0 || math.IsInf(c.RPS, 0) || math.IsNaN(c.RPS):
		return fmt.Errorf("invalid request rate %v", c.RPS)
	case c.Sessions < 0:
		return fmt.Errorf("sessions must not be negative, not %d", c.Sessions)
	case c.Keys < 0 || c.Keys > MaxKeys:
		return fmt.Errorf("keys must be from 1 to %d, not %d", MaxKeys, c.Keys)
	case c.KeySkew != 0 && !(c.KeySkew > 1 && c.KeySkew <= 100):
		return fmt.Errorf("a key skew is a Zipf exponent above 1 (1.1 is mild, 2 steep) and at most 100, not %g", c.KeySkew)
	case c.KeySkew != 0 && c.Keys == 0:
		return errors.New("a key skew needs keys to draw")
	case c.Clients < 0 || c.Clients > MaxClients:
		return fmt.Errorf("clients must be from 1 to %d, not %d", MaxClients, c.Clients)
	}
	ids := map[string]bool{}
	for _, s := range c.Servers {
		if s.ErrorRate < 0 || s.ErrorRate > 1 {
			return fmt.Errorf("server %s: error rate %v is outside 0-1", s.ID, s.ErrorRate)
		}
		if s.Capacity < 0 {
			return fmt.Errorf("server %s: capacity %d is negative", s.ID, s.Capacity)
		}
		ids[s.ID] = true
	}
	for _, o := range c.Outages {
		if !ids[o.Server] {
			return fmt.Errorf("outage of unknown server %q", o.Server)
		}
		if o.From < 0 || o.To <= o.From {
			return fmt.Errorf("outage of %s: it must end (%s) after it starts (%s)", o.Server, o.To, o.From)
		}
	}
	for _, ch := range c.Changes {
		switch {
		case !ids[ch.Server]:
			return fmt.Errorf("change of unknown server %q", ch.Server)
		case ch.At < 0:
			return fmt.Errorf("change of %s: at %s is before the start", ch.Server, ch.At)
		case ch.Behaviour != nil && (ch.Behaviour.ErrorRate < 0 || ch.Behaviour.ErrorRate > 1):
			return fmt.Errorf("change of %s: error rate %v is outside 0-1", ch.Server, ch.Behaviour.ErrorRate)
		}
	}
	var last time.Duration
	for _, rc := range c.RateChanges {
		switch {
		case c.RPS == 0:
			return errors.New("a request rate change needs an open-loop run (a request rate, not a concurrency)")
		case rc.At < last || !(rc.RPS > 0) || math.IsInf(rc.RPS, 0) || rc.Ramp < 0:
			return fmt.Errorf("rate change at %s to %v: want times in order from the start, a positive rate and a ramp that is not negative", rc.At, rc.RPS)
		}
		last = rc.At
	}
	if err := c.Hedging.Validate(); err != nil {
		return err
	}
	last = 0
	for _, cc := range c.ConcurrencyChanges {
		switch {
		case c.Concurrency == 0:
			return errors.New("a concurrency change needs a closed-loop run (a concurrency, not a request rate)")
		case cc.At < last || cc.Concurrency < 1 || cc.Concurrency > MaxConcurrency:
			return fmt.Errorf("concurrency change at %s to %d: want times in order from the start and 1 to %d in flight", cc.At, cc.Concurrency, MaxConcurrency)
		}
		last = cc.At
	}
	return nil
}

type eventKind uint8

const (
	evArrival eventKind = iota
	evAttemptDone
	evRetry
	evHealthCheck
	evOutageStart
	evOutageEnd
	evChange
	evRateChange
	evConcurrencyChange
	evPerTryTimeout
	evHedge
	evLoadReport
)

type event struct {
	at   int64
	seq  uint64 // tie-break: equal times run in scheduling order
	kind eventKind
	// epoch and server say, for evAttemptDone, whose work ends: the
	// server frees its place whether or not the client still waits, unless
	// an outage (a new epoch) has emptied it since.
	epoch  uint16
	target int32  // request slot or server index
	token  uint32 // attempt token, to drop completions of abandoned attempts
	server int32
}

// request is one simulated call. It holds no pointers, so that a run with
// millions of queued requests gives the garbage collector nothing to scan.
type request struct {
	active       bool
	queued       bool
	fails        bool  // the running attempt's answer is an error
	client       int32 // which client sends it
	id           int64 // issue order, which keys the request's random draws
	service      int64 // the running attempt's service time
	pushback     int64 // what the last failure's server said of a retry (config.Behaviour.Pushback)
	start        int64
	attemptStart int64
	server       int32 // -1 when no attempt is running
	// ep is the running attempt's endpoint as its client picked it,
	// which its end reports to even if the server has left the client's
	// endpoints (discovery, subsets) meanwhile.
	ep       *lb.Endpoint
	session  int32 // index into sessions, -1 for none
	key      int32 // index into keyHashes, -1 for none
	token    uint32
	attempts int32 // including picks that found no server
	tries    int32 // attempts that reached a server, listed in tried
	tried    [maxAttempts]int32
	// Hedging: a copy's slot has copyOf, the request's own slot; the
	// request's slot counts the copies sent (itself included) and those
	// still waiting for an answer, and lists the copies' slots.
	copyOf int32
	sent   int8
	live   int8
	copies [policy.MaxHedgingAttempts]int32
}

// maxAttempts bounds attempts per request: the first plus up to 10 retries,
// the most a configuration allows.
const maxAttempts = 11

type server struct {
	Server
	sample latency.Sampler
	down   bool
	// health is the last health set on it, for when no client has it.
	health lb.HealthStatus
	// absent: discovery does not report it (a scenario removed it).
	absent bool
	// coldUntil is when its cold start ends; before, it is slower.
	coldUntil int64
	busy      int
	queue     []waiting // FIFO of waiting requests
	epoch     uint16    // outages so far: work from before one is void
	checks    lb.HealthRun
	cache     *keyCache // nil without Behaviour.CacheKeys
	meter     loadMeter // what it reports of its load, when the strategy reads it
	missed    latency.Sampler
	hits      int
	misses    int
	attempts  int
	errors    int
	peak      int
	hist      histogram
}

// waiting is a request in a server's queue, as of its attempt's token: a
// request that gave up on it (its per-try timeout) is skipped.
type waiting struct {
	slot  int32
	token uint32
}

// follow maps the client's endpoints to servers, after a Sync: nil for a
// server outside the client's subset.
func (c *client) follow(servers []*server) {
	c.byEP = make(map[*lb.Endpoint]int32, len(servers))
	for i, sv := range servers {
		ep, _ := c.balancer.Endpoint(sv.ID)
		c.eps[i] = ep
		if ep != nil {
			c.byEP[ep] = int32(i)
		}
	}
}

// clientZones spreads a fleet of clients over zones in proportion to the
// locality block's client_zones or, without them, to the servers' zones
// (the clients deployed as the servers are, which the block assumes
// too), zones in name order; nil for one client or a service that does
// not route by zone.
func clientZones(cfg Config) []string {
	l := cfg.Balancer.Locality
	if cfg.Clients < 2 || (l == nil && cfg.LocalZone == "") {
		return nil
	}
	weights := cfg.ClientZones
	if len(weights) == 0 && l != nil {
		weights = l.ClientZones
	}
	if len(weights) == 0 {
		weights = map[string]float64{}
		for _, sv := range cfg.Servers {
			weights[sv.Zone]++
		}
	}
	names := slices.Sorted(maps.Keys(weights))
	var total float64
	for _, z := range names {
		total += weights[z]
	}
	out := make([]string, cfg.Clients)
	for k := range out {
		at := (float64(k) + 0.5) / float64(cfg.Clients) * total
		for _, z := range names {
			if at < weights[z] || z == names[len(names)-1] {
				out[k] = z
				break
			}
			at -= weights[z]
		}
	}
	return out
}

// client is one application instance's balancer over the servers.
type client struct {
	zone      string           // the client's own zone; "" when unknown
	limiter   *lb.RetryLimiter // its retry budget or throttling; nil is none
	balancer  *lb.LoadBalancer
	eps       []*lb.Endpoint // by server index
	byEP      map[*lb.Endpoint]int32
	panicking bool
}

// Bounds of a run, so that it finishes in minutes and a few gigabytes:
// requests and requests in flight (as a scenario's are), clients, and
// clients times servers (each client holds a balancer entry per server,
// about a kilobyte).
const (
	MaxRequests        = config.MaxRequests
	MaxConcurrency     = config.MaxConcurrency
	MaxClients         = 10000
	MaxClientEndpoints = 1_000_000
	MaxKeys            = config.MaxCacheKeys
)

type simulation struct {
	cfg     Config
	clients []*client
	rng     *rand.Rand // arrivals, sessions and which client sends
	load    *load      // the open loop's offered rate over time
	// concurrency is the closed loop's requests in flight now.
	concurrency int
	// draw gives each attempt of each request its own random numbers
	// (service time, error, backoff jitter), keyed by request and attempt
	// and reseeded each time, so that every strategy run on the same seed
	// sees the same draws: common random numbers, for comparisons whose
	// differences come from the strategies alone.
	drawSrc  *rand.PCG
	draw     *rand.Rand
	now      int64
	seq      uint64
	events   []event
	servers  []*server
	reqs     []request
	free     []int32
	sessions []context.Context
	// reportsLoad is set when the strategy reads servers' load reports
	// (weighted_round_robin): with every answer, or every oobPeriod.
	reportsLoad bool
	oobPeriod   int64
	// keyHashes are the keys' hashes as the balancer takes them; zipf
	// draws skewed keys.
	keyHashes []uint64
	zipf      *rand.Zipf
	scratch   []*lb.Endpoint // the current request's tried endpoints, for a pick
	timeline  *timeline

	// crossZone counts attempts sent out of their client's zone.
	crossZone int

	issued, done, succeeded, failed, retries, recovered, noHealthy, dropped, refused, perTryTimeouts, overloaded, hedges, hedgeWins, pushbackStops int
	latency                                                                                                                                        histogram
	log                                                                                                                                            []Event
}

// Run simulates cfg and reports what happened.
func Run(cfg Config) (*Report, error) { return RunContext(context.Background(), cfg) }

// RunContext is Run that stops, with ctx's error, when ctx ends.
func RunContext(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	drawSrc := rand.NewPCG(0, 0)
	s := &simulation{
		cfg:     cfg,
		rng:     rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x5eed)),
		drawSrc: drawSrc,
		draw:    rand.New(drawSrc),
		latency: newHistogram(),
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = 1 // the balancer treats 0 as "unseeded"; a run must repeat
	}
	specs := make([]lb.EndpointSpec, len(cfg.Servers))
	for i, sc := range cfg.Servers {
		specs[i] = sc.EndpointSpec
		sv := &server{Server: sc, hist: newHistogram()}
		sv.setBehaviour(sc.Behaviour)
		s.servers = append(s.servers, sv)
	}
	zones := clientZones(cfg)
	for k := range max(cfg.Clients, 1) {
		prefix := ""
		if cfg.Clients > 1 {
			prefix = fmt.Sprintf("client %d: ", k+1)
		}
		bc := cfg.Balancer
		if sub := bc.Subset; sub != nil && cfg.Clients > 1 {
			// The fleet's clients take indices 0, 1, 2…: each its subset.
			own := *sub
			own.ClientIndex = &k
			bc.Subset = &own
		}
		zone := cmp.Or(cfg.LocalZone, localZone(bc))
		if zones != nil {
			// A fleet spread over zones: each client prefers its own.
			zone = zones[k]
			if bc.Locality != nil {
				l := *bc.Locality
				l.LocalZone = zone
				bc.Locality = &l
			}
		}
		balancer, err := lb.New(bc, logger,
			lb.WithEvents(func(e lb.Event) {
				s.log = append(s.log, Event{At: time.Duration(s.now), Server: e.Endpoint, What: prefix + e.What, Source: FromBalancer})
			}),
			lb.WithClock(func() time.Time { return time.Unix(0, s.now) }), lb.WithSeed(seed+uint64(k)))
		if err != nil {
			return nil, fmt.Errorf("simulate: %w", err)
		}
		if err := balancer.Sync(specs); err != nil {
			return nil, fmt.Errorf("simulate: %w", err)
		}
		limiter, err := cfg.Retry.Limiter(time.Unix(0, 0))
		if err != nil {
			return nil, fmt.Errorf("simulate: %w", err)
		}
		c := &client{zone: zone, balancer: balancer, limiter: limiter}
		c.eps = make([]*lb.Endpoint, len(cfg.Servers))
		c.follow(s.servers)
		s.clients = append(s.clients, c)
	}
	for i := range cfg.Sessions {
		s.sessions = append(s.sessions, lb.WithSession(context.Background(), fmt.Sprintf("session-%d", i)))
	}
	if cfg.Keys > 0 {
		s.keyHashes = make([]uint64, cfg.Keys)
		buf := make([]byte, 0, 16)
		for i := range s.keyHashes {
			s.keyHashes[i] = xxhash.Sum64(strconv.AppendInt(append(buf[:0], "key-"...), int64(i), 10))
		}
		if cfg.KeySkew > 0 {
			s.zipf = rand.NewZipf(s.rng, cfg.KeySkew, 1, uint64(cfg.Keys-1))
		}
	}
	s.load = newLoad(cfg.RPS, cfg.RateChanges)
	s.timeline = newTimeline(cfg.TimelineStep, len(s.servers), s.expectedLength())
	// Changes go first, so that a server a scenario removes at 0s is gone
	// before the first request.
	for i, ch := range cfg.Changes {
		s.schedule(int64(ch.At), evChange, s.serverIndex(ch.Server), uint32(i))
	}
	for i, rc := range cfg.RateChanges {
		s.schedule(int64(rc.At), evRateChange, 0, uint32(i))
	}
	for _, o := range cfg.Outages {
		idx := s.serverIndex(o.Server)
		s.schedule(int64(o.From), evOutageStart, idx, 0)
		s.schedule(int64(o.To), evOutageEnd, idx, 0)
	}
	if cfg.Health.Interval > 0 {
		for i := range s.servers {
			s.schedule(0, evHealthCheck, int32(i), 0)
		}
	}
	if oob, ok := s.clients[0].balancer.LoadReports(); ok {
		s.reportsLoad, s.oobPeriod = true, int64(oob)
		for i := range s.servers {
			if s.oobPeriod > 0 {
				s.schedule(s.oobPeriod, evLoadReport, int32(i), 0)
			}
		}
	}
	for i, cc := range cfg.ConcurrencyChanges {
		s.schedule(int64(cc.At), evConcurrencyChange, 0, uint32(i))
	}
	if cfg.RPS > 0 {
		s.schedule(0, evArrival, 0, 0)
	} else {
		s.concurrency = cfg.Concurrency
		s.fillClosedLoop()
	}
	if err := s.loop(ctx); err != nil {
		return nil, err
	}
	return s.report(), nil
}

func (s *simulation) serverIndex(id string) int32 {
	for i, sv := range s.servers {
		if sv.ID == id {
			return int32(i)
		}
	}
	return -1
}

const progressEvery = 1 << 14

// loop runs events until every request is done; it looks at ctx every
// few thousand events, which take well under a millisecond.
func (s *simulation) loop(ctx context.Context) error {
	for n := 0; s.done < s.cfg.Requests && len(s.events) > 0; n++ {
		if n%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		ev := s.pop()
		s.now = ev.at
		switch ev.kind {
		case evArrival:
			s.startRequest()
			if s.issued < s.cfg.Requests {
				s.schedule(s.load.next(s.now, s.rng), evArrival, 0, 0)
			}
		case evAttemptDone:
			s.attemptDone(ev)
		case evPerTryTimeout:
			s.perTryTimeout(ev.target, ev.token)
		case evHedge:
			if r := &s.reqs[ev.target]; r.active && r.copyOf < 0 && uint32(r.id) == ev.token {
				s.hedge(ev.target)
			}
		case evRetry:
			s.attempt(ev.target)
		case evLoadReport:
			s.reportLoadOutOfBand(ev.target)
		case evHealthCheck:
			s.healthCheck(ev.target)
		case evOutageStart:
			s.outageStart(ev.target)
		case evOutageEnd:
			s.servers[ev.target].down = false
			s.note(ev.target, FromScenario, "back up")
			s.startCold(ev.target)
		case evChange:
			s.change(ev.target, &s.cfg.Changes[ev.token])
		case evRateChange:
			rc := s.cfg.RateChanges[ev.token]
			what := fmt.Sprintf("offered load now %g requests a second", rc.RPS)
			if rc.Ramp > 0 {
				what = fmt.Sprintf("offered load ramps to %g requests a second over %s", rc.RPS, rc.Ramp)
			}
			s.log = append(s.log, Event{At: time.Duration(s.now), Server: "(all)", What: what, Source: FromScenario})
		case evConcurrencyChange:
			s.concurrency = s.cfg.ConcurrencyChanges[ev.token].Concurrency
			s.log = append(s.log, Event{At: time.Duration(s.now), Server: "(all)", What: fmt.Sprintf("requests in flight now %d", s.concurrency), Source: FromScenario})
			s.fillClosedLoop()
		}
	}
	return nil
}

func (s *simulation) startRequest() {
	s.issued++
	var slot int32
	if n := len(s.free); n > 0 {
		slot, s.free = s.free[n-1], s.free[:n-1]
	} else {
		s.reqs = append(s.reqs, request{})
		slot = int32(len(s.reqs) - 1)
	}
	r := &s.reqs[slot]
	*r = request{active: true, id: int64(s.issued), start: s.now, server: -1, session: -1, key: -1, token: r.token, copyOf: -1, sent: 1, live: 1}
	if len(s.clients) > 1 {
		r.client = int32(s.rng.IntN(len(s.clients)))
	}
	if len(s.sessions) > 0 {
		r.session = int32(s.rng.IntN(len(s.sessions)))
	}
	switch {
	case s.zipf != nil:
		r.key = int32(s.zipf.Uint64())
	case len(s.keyHashes) > 0:
		r.key = int32(s.rng.IntN(len(s.keyHashes)))
	}
	s.clients[r.client].limiter.Call(s.clock())
	h := s.cfg.Hedging
	if h != nil && h.MaxAttempts > 1 && h.Delay > 0 {
		s.schedule(s.now+int64(h.Delay), evHedge, slot, uint32(r.id))
	}
	id := r.id
	s.attempt(slot)
	if h != nil && h.Delay == 0 { // every copy at once
		for r := &s.reqs[slot]; r.active && r.copyOf < 0 && r.id == id && int(r.sent) < h.MaxAttempts && s.hedge(slot); r = &s.reqs[slot] {
		}
	}
}

// newSlot returns a free request slot.
func (s *simulation) newSlot() int32 {
	if n := len(s.free); n > 0 {
		slot := s.free[n-1]
		s.free = s.free[:n-1]
		return slot
	}
	s.reqs = append(s.reqs, request{})
	return int32(len(s.reqs) - 1)
}

// hedge sends another copy of request root to a server none of its
// copies has tried, if the retry budget allows, and schedules the next
// after the delay. It reports whether a copy went.
func (s *simulation) hedge(root int32) bool {
	h := s.cfg.Hedging
	r := &s.reqs[root]
	if int(r.sent) >= h.MaxAttempts || !s.clients[r.client].limiter.Retry(s.clock()) {
		return false
	}
	slot := s.newSlot()
	r = &s.reqs[root] // newSlot may have moved the slots
	c := &s.reqs[slot]
	*c = request{active: true, id: r.id, start: r.start, client: r.client, session: r.session, key: r.key, server: -1, token: c.token,
		copyOf: root, attempts: int32(r.sent), tries: r.tries, tried: r.tried}
	r.copies[r.sent-1] = slot
	r.sent++
	r.live++
	s.hedges++
	if int(r.sent) < h.MaxAttempts && h.Delay > 0 {
		s.schedule(s.now+int64(h.Delay), evHedge, root, uint32(r.id))
	}
	s.attempt(slot)
	return true
}

// rootOf is the request a slot's attempt belongs to.
func (s *simulation) rootOf(slot int32) int32 {
	if c := s.reqs[slot].copyOf; c >= 0 {
		return c
	}
	return slot
}

// settle ends hedged request root: the copies still waiting are
// abandoned (their servers finish the work), and the request finishes.
func (s *simulation) settle(root int32, ok bool) {
	r := &s.reqs[root]
	for _, c := range r.copies[:max(r.sent-1, 0)] {
		if cp := &s.reqs[c]; cp.active && cp.copyOf == root {
			cp.active = false
			cp.token++
			s.free = append(s.free, c)
		}
	}
	r.server = -1
	s.finish(root, ok)
}

// hedgeFailed ends one copy's failed attempt: after a non-fatal code the
// next copy goes at once (if any may); when none is left waiting, or the
// code is fatal, the request fails.
func (s *simulation) hedgeFailed(slot int32, code statuscode.Code) {
	root := s.rootOf(slot)
	r := &s.reqs[root]
	if slot != root {
		cp := &s.reqs[slot]
		cp.active = false
		cp.token++
		s.free = append(s.free, slot)
	} else {
		r.server = -1
		r.token++
	}
	r.live--
	nonFatal := s.cfg.Hedging.NonFatalCodes.Has(code)
	s.clients[r.client].limiter.Result(false, nonFatal)
	if nonFatal && s.hedge(root) {
		return
	}
	if !nonFatal || r.live <= 0 {
		s.settle(root, false)
	}
}

// clock is the simulated time as the balancer and the limiters take it.
func (s *simulation) clock() time.Time { return time.Unix(0, s.now) }

// fillClosedLoop starts requests until the closed loop has its number in
// flight, or every request has started.
func (s *simulation) fillClosedLoop() {
	for s.issued-s.done < s.concurrency && s.issued < s.cfg.Requests {
		s.startRequest()
	}
}

// attempt sends one try of request slot to a freshly picked server.
func (s *simulation) attempt(slot int32) {
	r := &s.reqs[slot]
	ctx := context.Background()
	if r.session >= 0 {
		ctx = s.sessions[r.session]
	}
	r.attempts++
	if r.attempts > 1 && r.copyOf < 0 {
		s.retries++
	}
	c := s.clients[r.client]
	s.scratch = s.scratch[:0]
	for _, i := range r.tried[:r.tries] {
		s.scratch = append(s.scratch, c.eps[i])
	}
	var ep *lb.Endpoint
	var err error
	if r.key >= 0 {
		ep, err = c.balancer.PickHash(ctx, s.keyHashes[r.key], s.scratch)
	} else {
		ep, err = c.balancer.PickExcluding(ctx, s.scratch)
	}
	if errors.Is(err, lb.ErrOverloaded) { // the circuit breakers or rate limit: fail at once
		s.overloaded++
		s.failAttempt(slot, OverloadedCode, s.cfg.Retry.Retries(OverloadedCode))
		return
	}
	if err != nil && s.cfg.Hedging != nil {
		s.noHealthy++
		s.hedgeFailed(slot, statuscode.Unavailable)
		return
	}
	if err != nil { // nothing healthy: back off and try again, as a client would
		s.noHealthy++
		s.retryOrFail(slot)
		return
	}
	idx := c.byEP[ep]
	r.tried[r.tries] = idx
	r.tries++
	if r.copyOf >= 0 { // later copies avoid this server too
		if root := &s.reqs[r.copyOf]; root.tries < maxAttempts {
			root.tried[root.tries] = idx
			root.tries++
		}
	}
	sv := s.servers[idx]
	sv.attempts++
	cross := c.zone != "" && sv.Zone != c.zone
	if cross {
		s.crossZone++
	}
	s.timeline.attempt(s.now, idx)
	r.server, r.attemptStart, r.ep = idx, s.now, ep
	r.token++
	if sv.down { // connection refused
		sv.errors++
		s.markUnhealthy(idx, "connection refused")
		c.balancer.Done(ep, 0, s.outcome(statuscode.Unavailable))
		r.server = -1
		s.failAttempt(slot, statuscode.Unavailable, s.cfg.Retry.Retries(statuscode.Unavailable))
		return
	}
	if pt := s.cfg.Retry.PerTryTimeout; pt > 0 && s.cfg.Hedging == nil {
		s.schedule(s.now+int64(pt), evPerTryTimeout, slot, r.token)
	}
	d := s.stream(r.id, r.attempts)
	sample := &sv.sample
	if sv.cache != nil && r.key >= 0 {
		if sv.cache.touch(r.key) {
			sv.hits++
		} else if sv.misses++; sv.MissLatency != nil {
			sample = &sv.missed
		}
	}
	r.service = sample.Sample(d)
	if cross {
		r.service += int64(s.cfg.CrossZoneLatency)
	}
	if s.now < sv.coldUntil {
		r.service = int64(float64(r.service) * sv.coldFactor(s.now))
	}
	r.fails = sv.ErrorRate > 0 && d.Float64() < sv.ErrorRate
	if sv.Capacity == 0 || sv.busy < sv.Capacity {
		s.serve(sv, idx, slot)
	} else if len(sv.queue) >= MaxQueue {
		// A real server's queue is bounded too: the call is refused.
		sv.errors++
		s.dropped++
		c.balancer.Done(ep, 0, s.outcome(DroppedCode))
		r.server = -1
		s.failAttempt(slot, DroppedCode, s.cfg.Retry.Retries(DroppedCode))
		return
	} else {
		r.queued = true
		sv.queue = append(sv.queue, waiting{slot, r.token})
	}
	sv.peak = max(sv.peak, sv.busy+len(sv.queue))
	if s.cfg.onPick != nil {
		s.cfg.onPick(s, idx)
	}
}

// serve starts the work of request slot's attempt on server idx.
func (s *simulation) serve(sv *server, idx, slot int32) {
	r := &s.reqs[slot]
	if s.reportsLoad {
		sv.meter.advance(s.now, sv.busy)
	}
	sv.busy++
	s.seq++
	s.push(event{at: s.now + r.service, seq: s.seq, kind: evAttemptDone, epoch: sv.epoch, target: slot, token: r.token, server: idx})
}

// attemptDone ends a server's work on an attempt: the server frees its
// place, and the request, if it still waits for this attempt, has its
// answer.
func (s *simulation) attemptDone(ev event) {
	sv := s.servers[ev.server]
	slot := ev.target
	r := &s.reqs[slot]
	live := r.active && r.token == ev.token
	if ev.epoch == sv.epoch {
		if s.reportsLoad {
			sv.meter.answer(s.now, sv.busy, live && r.fails)
		}
		sv.busy--
		s.startQueued(sv, ev.server)
		r = &s.reqs[slot]
	}
	if !live {
		return // abandoned: its server went down, or its per-try timeout passed
	}
	if s.reportsLoad && s.oobPeriod == 0 {
		// The answer's trailers carry the server's load.
		c := s.clients[r.client]
		c.balancer.ReportLoad(r.ep, sv.meter.report(s.now, sv.busy, sv.Capacity))
	}
	took := s.now - r.attemptStart
	sv.hist.record(took)
	r.server = -1
	c := s.clients[r.client]
	if r.fails {
		sv.errors++
		code := sv.ErrorCode
		if code == statuscode.OK {
			code = ServerErrorCode
		}
		c.balancer.Done(r.ep, time.Duration(took), s.outcome(code))
		r.pushback = int64(sv.Pushback)
		s.failAttempt(slot, code, s.cfg.Retry.Retries(code))
		return
	}
	c.balancer.Done(r.ep, time.Duration(took), lb.Success)
	c.limiter.Result(true, false)
	if s.cfg.Hedging != nil {
		if r.copyOf >= 0 {
			s.hedgeWins++
		}
		s.settle(s.rootOf(slot), true)
		return
	}
	if r.tries > 1 {
		s.recovered++
	}
	s.finish(slot, true)
}

// perTryTimeout gives up on an attempt that has not answered within the
// retry policy's per_try_timeout: a failure of its endpoint, retried
// elsewhere. The server, which does not know, finishes the work (or drops
// the request from its queue when it comes to it).
func (s *simulation) perTryTimeout(slot int32, token uint32) {
	r := &s.reqs[slot]
	if !r.active || r.token != token || r.server < 0 {
		return
	}
	r.token++
	r.queued = false
	r.server = -1
	s.perTryTimeouts++
	c := s.clients[r.client]
	c.balancer.Done(r.ep, time.Duration(s.now-r.attemptStart), s.outcome(policy.PerTryCode))
	s.failAttempt(slot, policy.PerTryCode, true)
}

// failAttempt ends a failed attempt: the limiter learns of it, and the
// request is retried if its code is, or fails.
func (s *simulation) failAttempt(slot int32, code statuscode.Code, retryable bool) {
	if s.cfg.Hedging != nil {
		s.hedgeFailed(slot, code)
		return
	}
	s.clients[s.reqs[slot].client].limiter.Result(false, retryable)
	if retryable {
		s.retryOrFail(slot)
	} else {
		s.finish(slot, false)
	}
}

// startQueued moves the next waiting request of sv into service, skipping
// those that gave up.
func (s *simulation) startQueued(sv *server, idx int32) {
	for len(sv.queue) > 0 {
		next := sv.queue[0]
		sv.queue = sv.queue[1:]
		r := &s.reqs[next.slot]
		if !r.active || r.token != next.token {
			continue
		}
		r.queued = false
		s.serve(sv, idx, next.slot)
		return
	}
}

// stream returns the random numbers of one attempt of request id (or, with
// the jitter bit, of its backoff).
func (s *simulation) stream(id int64, attempt int32) *rand.Rand {
	s.drawSrc.Seed(s.cfg.Seed^uint64(id)*0x9e3779b97f4a7c15, uint64(attempt)^0x5eed)
	return s.draw
}

// jitterStream keys a backoff's draw apart from its attempt's.
const jitterStream = 1 << 16

// retryOrFail backs off as the retry policy says, with ±20% jitter, and
// tries again while retries, the failover timeout and the client's retry
// budget last.
func (s *simulation) retryOrFail(slot int32) {
	r := &s.reqs[slot]
	b := s.cfg.Retry
	attempts := int(r.attempts)
	pushback := r.pushback
	r.pushback = 0
	if pushback == int64(config.PushbackNoRetry) {
		s.pushbackStops++
	} else if attempts <= b.MaxRetries && attempts < maxAttempts {
		backoff := policy.Jitter(b.Backoff(attempts), s.stream(r.id, r.attempts|jitterStream).Float64())
		if pushback > 0 { // the server said how long to wait
			backoff = time.Duration(pushback)
		}
		at := s.now + int64(backoff)
		if at-r.start <= int64(b.FailoverTimeout) {
			if !s.clients[r.client].limiter.Retry(s.clock()) {
				s.refused++
			} else {
				s.schedule(at, evRetry, slot, 0)
				return
			}
		}
	}
	s.finish(slot, false)
}

func (s *simulation) finish(slot int32, ok bool) {
	r := &s.reqs[slot]
	r.active = false
	r.token++
	s.done++
	if s.cfg.onFinish != nil {
		s.cfg.onFinish(r.id, r.start, r.service)
	}
	s.timeline.finish(s.now, ok, s.now-r.start)
	if ok {
		s.succeeded++
		s.latency.record(s.now - r.start)
	} else {
		s.failed++
	}
	s.free = append(s.free, slot)
	if s.cfg.Progress != nil && s.done%progressEvery == 0 {
		s.cfg.Progress(s.done)
	}
	if s.cfg.Concurrency > 0 {
		s.fillClosedLoop()
	}
}

func (s *simulation) outageStart(idx int32) {
	sv := s.servers[idx]
	sv.down = true
	if sv.cache != nil {
		sv.cache.clear() // it comes back cold
	}
	s.note(idx, FromScenario, "goes down")
	// Its connections break: the channel sees it at once, as gRPC does
	// on a reset connection, and every call on it fails and is retried.
	s.markUnhealthy(idx, "connection lost")
	sv.epoch++
	if s.reportsLoad {
		sv.meter.advance(s.now, sv.busy)
	}
	sv.busy, sv.queue = 0, sv.queue[:0]
	for slot := range s.reqs {
		r := &s.reqs[slot]
		if r.active && r.server == idx {
			r.token++
			r.server = -1
			r.queued = false
			sv.errors++
			c := s.clients[r.client]
			c.balancer.Done(r.ep, time.Duration(s.now-r.attemptStart), s.outcome(statuscode.Unavailable))
			s.failAttempt(int32(slot), statuscode.Unavailable, s.cfg.Retry.Retries(statuscode.Unavailable))
		}
	}
}

// markUnhealthy marks a server unhealthy in every client: its connections
// broke, or its checks failed, for all of them alike.
func (s *simulation) markUnhealthy(idx int32, why string) {
	sv := s.servers[idx]
	if s.health(idx) == lb.HealthUnhealthy {
		return
	}
	s.setHealth(idx, lb.HealthUnhealthy)
	sv.checks = lb.HealthRun{}
	s.note(idx, FromHealth, "marked unhealthy ("+why+")")
}

// health is a server's health as the clients that have it see it (alike
// for all); its last set health when none has it (subsets).
func (s *simulation) health(idx int32) lb.HealthStatus {
	if ep := s.endpoint(idx); ep != nil {
		return ep.Health()
	}
	return s.servers[idx].health
}

// endpoint is server idx as the first client that has it knows it; nil
// when it is in no client's subset.
func (s *simulation) endpoint(idx int32) *lb.Endpoint {
	for _, c := range s.clients {
		if ep := c.eps[idx]; ep != nil {
			return ep
		}
	}
	return nil
}

// setHealth sets a server's health in every client, and records a client
// entering or leaving panic mode.
func (s *simulation) setHealth(idx int32, h lb.HealthStatus) {
	s.servers[idx].health = h
	for k, c := range s.clients {
		_ = c.balancer.SetHealth(s.servers[idx].ID, h)
		if p := c.balancer.Panicking(); p != c.panicking {
			c.panicking = p
			what := "panic mode ends"
			if p {
				what = fmt.Sprintf("panic mode: under %g%% of servers healthy, balancing over all", s.cfg.Balancer.PanicThreshold)
			}
			if len(s.clients) > 1 {
				what = fmt.Sprintf("client %d: %s", k+1, what)
			}
			s.log = append(s.log, Event{At: time.Duration(s.now), Server: "(all)", What: what, Source: FromBalancer})
		}
	}
}

// healthCheck runs one grpc.health.v1-style check: it passes unless the
// server is down, and the thresholds act as the HealthChecker's do.
func (s *simulation) healthCheck(idx int32) {
	sv := s.servers[idx]
	h := s.cfg.Health
	if sv.absent { // the health checker checks what discovery reports
		s.schedule(s.now+int64(h.Interval), evHealthCheck, idx, 0)
		return
	}
	before := s.health(idx)
	after := h.Thresholds().Observe(&sv.checks, before, !sv.down)
	for _, c := range s.clients {
		if ep := c.eps[idx]; ep != nil {
			c.balancer.Probed(ep, !sv.down)
		}
	}
	switch {
	case after == lb.HealthUnhealthy && before != lb.HealthUnhealthy:
		s.markUnhealthy(idx, fmt.Sprintf("%d failed checks", sv.checks.Failures))
	case after != before:
		s.setHealth(idx, after)
		if before == lb.HealthUnhealthy {
			s.note(idx, FromHealth, fmt.Sprintf("healthy again after %d passed checks", sv.checks.Passes))
		}
	}
	s.schedule(s.now+int64(h.Interval), evHealthCheck, idx, 0)
}

// change applies a scenario's change to server idx.
func (s *simulation) change(idx int32, ch *Change) {
	sv := s.servers[idx]
	if b := ch.Behaviour; b != nil {
		if b.Latency.String() != sv.Latency.String() {
			s.note(idx, FromScenario, "latency now "+b.Latency.String())
		}
		if b.ErrorRate != sv.ErrorRate || b.ErrorCode != sv.ErrorCode {
			what := fmt.Sprintf("error rate now %g", b.ErrorRate)
			if b.ErrorCode != statuscode.OK {
				what += " (" + b.ErrorCode.String() + ")"
			}
			s.note(idx, FromScenario, what)
		}
		if b.Capacity != sv.Capacity {
			s.note(idx, FromScenario, fmt.Sprintf("capacity now %d", b.Capacity))
		}
		sv.setBehaviour(*b)
		for len(sv.queue) > 0 && (sv.Capacity == 0 || sv.busy < sv.Capacity) {
			s.startQueued(sv, idx)
		}
	}
	if ch.Discovered != nil && *ch.Discovered == sv.absent {
		sv.absent = !*ch.Discovered
		s.syncDiscovery(idx)
		if sv.absent {
			s.note(idx, FromScenario, "leaves discovery")
		} else {
			s.note(idx, FromScenario, "joins discovery")
			s.startCold(idx)
		}
	}
	if ch.ColdStart {
		s.startCold(idx)
	}
}

// syncDiscovery gives every client the servers discovery reports, as a
// discovery update would, after server idx joined or left.
func (s *simulation) syncDiscovery(idx int32) {
	specs := make([]lb.EndpointSpec, 0, len(s.servers))
	for _, sv := range s.servers {
		if !sv.absent {
			specs = append(specs, sv.EndpointSpec)
		}
	}
	sv := s.servers[idx]
	sv.checks = lb.HealthRun{}
	for _, c := range s.clients {
		// The specs were valid when the run began; Sync cannot fail.
		_ = c.balancer.Sync(specs)
		c.follow(s.servers) // with subsets, others may come and go too
	}
}

// startCold begins a cold start of server idx, if it has one.
func (s *simulation) startCold(idx int32) {
	sv := s.servers[idx]
	if sv.ColdStart <= 0 {
		return
	}
	sv.coldUntil = s.now + int64(sv.ColdStart)
	s.note(idx, FromScenario, fmt.Sprintf("cold start: %g× slower, warming up over %s", sv.ColdStartSlow, sv.ColdStart))
}

// coldFactor is how many times slower the server is at now, in its cold
// start: ColdStartSlow at its start, falling linearly to 1 at its end.
func (sv *server) coldFactor(now int64) float64 {
	left := float64(sv.coldUntil-now) / float64(sv.ColdStart)
	return 1 + (sv.ColdStartSlow-1)*left
}

// MaxQueue bounds a server's queue, as a real server's is: a request that
// finds it full is refused at once (DroppedCode). It also bounds a run's
// memory when the offered load is far over the servers' capacity.
const MaxQueue = 100_000

// OverloadedCode is the status of a call the client's circuit breakers or
// rate limit refused, as the real client's.
const OverloadedCode = statuscode.ResourceExhausted

// DroppedCode is the status of a request refused by a full queue.
const DroppedCode = statuscode.ResourceExhausted

// Capacity is the rate of requests the servers can answer at most, in
// requests per second (each server's capacity over its mean latency), or
// false when some server takes any number of requests at once.
func (c *Config) Capacity() (float64, bool) {
	var rps float64
	for _, s := range c.Servers {
		if s.Capacity == 0 {
			return 0, false
		}
		if mean := s.Latency.Mean(); mean > 0 {
			rps += float64(s.Capacity) / mean.Seconds()
		}
	}
	return rps, true
}

// ServerErrorCode is the status of a simulated server's errors (its
// error_rate): a failure on the server's side, as INTERNAL is.
const ServerErrorCode = statuscode.Internal

// outcome classifies a simulated call's status as the real client does.
func (s *simulation) outcome(code statuscode.Code) lb.Outcome {
	return s.cfg.Balancer.Outcomes.Classify(code, false)
}

func (s *simulation) note(idx int32, source EventSource, what string) {
	s.log = append(s.log, Event{At: time.Duration(s.now), Server: s.servers[idx].ID, What: what, Source: source})
}

// --- event heap: 4-ary (half the levels of a binary heap, and a node's
// children share a cache line), ordered by (at, seq), without
// container/heap's boxing ---

const heapArity = 4

func (s *simulation) schedule(at int64, kind eventKind, target int32, token uint32) {
	s.seq++
	s.push(event{at: at, seq: s.seq, kind: kind, target: target, token: token})
}

func (s *simulation) push(e event) {
	s.events = append(s.events, e)
	h := s.events
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / heapArity
		if !e.before(h[p]) {
			break
		}
		h[i] = h[p]
		i = p
	}
	h[i] = e
}

func (a event) before(b event) bool { return a.at < b.at || (a.at == b.at && a.seq < b.seq) }

func (s *simulation) pop() event {
	h := s.events
	top := h[0]
	last := len(h) - 1
	e := h[last]
	h = h[:last]
	s.events = h
	if last == 0 {
		return top
	}
	i := 0
	for {
		first := heapArity*i + 1
		if first >= len(h) {
			break
		}
		m := first
		for c := first + 1; c < min(first+heapArity, len(h)); c++ {
			if h[c].before(h[m]) {
				m = c
			}
		}
		if !h[m].before(e) {
			break
		}
		h[i] = h[m]
		i = m
	}
	h[i] = e
	return top
}

// setBehaviour makes b how the server behaves from now on; its cache
// keeps what it holds unless its size changes.
func (sv *server) setBehaviour(b config.Behaviour) {
	sv.Behaviour, sv.sample = b, b.Latency.Sampler()
	if b.MissLatency != nil {
		sv.missed = b.MissLatency.Sampler()
	}
	switch {
	case b.CacheKeys == 0:
		sv.cache = nil
	case sv.cache == nil || int(sv.cache.capacity) != b.CacheKeys:
		sv.cache = newKeyCache(b.CacheKeys)
	}
}

// reportLoadOutOfBand sends server idx's load report to every client, as
// ORCA's out-of-band stream does, unless it is down, and schedules the
// next.
func (s *simulation) reportLoadOutOfBand(idx int32) {
	sv := s.servers[idx]
	if !sv.down {
		r := sv.meter.report(s.now, sv.busy, sv.Capacity)
		for _, c := range s.clients {
			if ep := c.eps[idx]; ep != nil {
				c.balancer.ReportLoad(ep, r)
			}
		}
	}
	s.schedule(s.now+s.oobPeriod, evLoadReport, idx, 0)
}
