package rpc

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/orcaload"
	"github.com/peervault/pvlb/pkg/statuscode"
	"github.com/peervault/pvlb/pkg/telemetry"
)

// LoadBalancedClient is a grpc.ClientConnInterface that sends every call to
// an endpoint picked by a LoadBalancer, so generated stubs work through it:
//
//	client := peervaultv1.NewPeerVaultServiceClient(balancedClient)
//
// A call that fails with a retryable code (UNAVAILABLE by default: refused
// or broken connections), or whose attempt outlives PerTryTimeout, is
// retried up to MaxRetries times, each time on an endpoint not yet tried
// while one is left, after an exponential backoff with jitter (or as long
// as the server's grpc-retry-pushback-ms says), as long as
// FailoverTimeout, the call's deadline and the retry budget allow. A
// stream is retried only while no response has begun; after that its
// errors go to the caller.
type LoadBalancedClient struct {
	balancer *lb.LoadBalancer
	pool     *ConnPool
	ownPool  bool
	cfg      atomic.Pointer[LoadBalancedClientConfig]
	log      *slog.Logger
	// loads keeps out-of-band load report streams when the strategy reads
	// them; guarded by loadsMu.
	loadsMu sync.Mutex
	loads   *loadStreams
	*retrier

	closed atomic.Bool
}

var _ grpc.ClientConnInterface = (*LoadBalancedClient)(nil)

// ClientOption adjusts a LoadBalancedClient.
type ClientOption func(*clientOptions)

type clientOptions struct {
	pool     *ConnPool
	dialOpts []grpc.DialOption
	metrics  *telemetry.Metrics
}

// WithMetrics records the client's attempts and calls in m, the metrics
// of its balancer (telemetry.New).
func WithMetrics(m *telemetry.Metrics) ClientOption { return func(o *clientOptions) { o.metrics = m } }

// WithConnPool makes the client use pool, typically shared with a
// HealthChecker, instead of a pool of its own. The client does not close a
// pool it was given.
func WithConnPool(pool *ConnPool) ClientOption { return func(o *clientOptions) { o.pool = pool } }

// WithDialOptions adds grpc-go dial options for the client's own pool.
func WithDialOptions(opts ...grpc.DialOption) ClientOption {
	return func(o *clientOptions) { o.dialOpts = append(o.dialOpts, opts...) }
}

// NewLoadBalancedClient returns a client over balancer. A nil config means
// DefaultLoadBalancedClientConfig(); a nil logger discards logs.
func NewLoadBalancedClient(balancer *lb.LoadBalancer, config *LoadBalancedClientConfig, logger *slog.Logger, opts ...ClientOption) (*LoadBalancedClient, error) {
	if config == nil {
		config = DefaultLoadBalancedClientConfig()
	}
	var o clientOptions
	for _, opt := range opts {
		opt(&o)
	}
	retrier, err := newRetrier(config.Retry, config.Hedging, logger)
	if err != nil {
		return nil, err
	}
	c := &LoadBalancedClient{
		retrier:  retrier,
		balancer: balancer,
		pool:     o.pool,
		log:      loggerOrDiscard(logger),
	}
	cfg := *config
	c.cfg.Store(&cfg)
	if o.metrics != nil {
		c.useMetrics(o.metrics)
	}
	if c.pool == nil {
		pool, err := NewConnPool(balancer, &config.Client, logger, o.dialOpts...)
		if err != nil {
			return nil, err
		}
		c.pool, c.ownPool = pool, true
	}
	c.followLoadReports()
	return c, nil
}

// Reconfigure makes later calls follow config: the retry policy (an
// unchanged retry block keeps its budget's state), hedging and, for a
// client with its own connections, the connection settings (see
// ConnPool.Reconfigure; a pool given with WithConnPool is its owner's to
// change). It also takes up what the balancer's configuration asks of the
// client now: how results are classified, the request metadata picks
// read, load reports; call it after LoadBalancer.Reconfigure. Calls in
// progress finish. An invalid config changes nothing.
func (c *LoadBalancedClient) Reconfigure(config *LoadBalancedClientConfig) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if c.ownPool {
		if _, err := DialOptions(&config.Client); err != nil {
			return err
		}
	}
	if err := c.setPolicy(config.Retry, config.Hedging); err != nil {
		return err
	}
	if c.ownPool {
		if err := c.pool.Reconfigure(&config.Client); err != nil {
			return err
		}
	}
	cfg := *config
	c.cfg.Store(&cfg)
	c.followLoadReports()
	return nil
}

// followLoadReports keeps out-of-band load report streams open while the
// balancer's strategy reads them, at its period, on the pool's current
// connections.
func (c *LoadBalancedClient) followLoadReports() {
	c.loadsMu.Lock()
	defer c.loadsMu.Unlock()
	if c.loads != nil {
		c.loads.Close()
		c.loads = nil
	}
	if oob, ok := c.balancer.LoadReports(); ok && oob > 0 && !c.closed.Load() {
		c.loads = newLoadStreams(c.balancer, c.pool, oob, c.log)
	}
}

// CallReport, passed as a call option, is filled in with every attempt the
// call made, the last being the one that answered (or failed for good),
// and, for a call that failed, why it was not retried again.
type CallReport struct {
	grpc.EmptyCallOption
	Attempts []Attempt
	// NotRetried says why a failed call stopped: its code is not
	// retried, max_retries, failover_timeout, the deadline, the retry
	// budget or throttling, or the server's pushback.
	NotRetried string
}

// Attempt is one try of a call on one endpoint.
type Attempt struct {
	Server  string
	Address string
	Latency time.Duration
	Err     error
	// Hedge marks a hedged copy sent after the call's first.
	Hedge bool
}

func findReport(opts []grpc.CallOption) *CallReport {
	for _, o := range opts {
		if r, ok := o.(*CallReport); ok {
			return r
		}
	}
	return nil
}

func (r *CallReport) add(e *lb.Endpoint, took time.Duration, err error) {
	if r != nil {
		r.Attempts = append(r.Attempts, Attempt{Server: e.ID, Address: e.Address, Latency: took, Err: err})
	}
}

// classify turns an attempt's error into its outcome for the endpoint.
func (c *LoadBalancedClient) classify(ctx context.Context, err error) lb.Outcome {
	if err == nil {
		return lb.Success
	}
	return c.balancer.Outcomes().Classify(statuscode.Code(status.Code(err)), errors.Is(ctx.Err(), context.Canceled))
}

// pickError is a pick's failure as a gRPC status: UNAVAILABLE when no
// endpoint may take traffic (ErrNoHealthyServers), RESOURCE_EXHAUSTED when
// the circuit breakers or the rate limit leave none (lb.ErrOverloaded).
type pickError struct{ err error }

func (e pickError) Error() string { return e.err.Error() }
func (e pickError) Unwrap() error { return e.err }
func (e pickError) GRPCStatus() *status.Status {
	if errors.Is(e.err, lb.ErrOverloaded) {
		return status.New(codes.ResourceExhausted, e.err.Error())
	}
	return status.New(codes.Unavailable, e.err.Error())
}

// Invoke sends a unary call through the balancer.
func (c *LoadBalancedClient) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	if c.closed.Load() {
		return status.Error(codes.Canceled, "load balanced client is closed")
	}
	return c.invoke(c.keyedContext(ctx, method), method, args, reply, opts, c.attempt)
}

// attempt makes one attempt through the client's own connections: it
// picks an endpoint other than those tried, calls it and reports the
// outcome to the balancer.
func (c *LoadBalancedClient) attempt(ctx context.Context, method string, args, reply any, tried []*lb.Endpoint, opts []grpc.CallOption, picked func(*lb.Endpoint)) (*lb.Endpoint, error) {
	e, err := c.balancer.PickExcluding(ctx, tried)
	if err != nil {
		return nil, pickError{err}
	}
	if picked != nil {
		picked(e)
	}
	started := time.Now()
	pc, err := c.pool.hold(e)
	defer pc.release()
	if err != nil {
		err = status.Error(codes.Unavailable, err.Error())
	} else if err = c.waitForConnection(ctx, pc.cc); err != nil {
		c.balancer.Release(e) // refused by max_pending: nothing to say about the endpoint
		return e, err
	} else if oob, ok := c.balancer.LoadReports(); ok && oob == 0 {
		// The strategy reads the load each call's trailers report (ORCA).
		var trailer metadata.MD
		err = pc.cc.Invoke(ctx, method, args, reply, append(opts, grpc.Trailer(&trailer))...)
		if r, ok := orcaload.FromTrailer(trailer); ok {
			c.balancer.ReportLoad(e, r)
		}
	} else {
		err = pc.cc.Invoke(ctx, method, args, reply, opts...)
	}
	c.balancer.Done(e, time.Since(started), c.classify(ctx, err))
	return e, err
}

// waitForConnection waits, under the circuit breakers' max_pending, while
// cc is still connecting: such a call is pending, as Envoy counts calls
// queued for a connection. Without max_pending, gRPC's own wait does.
func (c *LoadBalancedClient) waitForConnection(ctx context.Context, cc *grpc.ClientConn) error {
	if !c.balancer.LimitsPending() {
		return nil
	}
	st := cc.GetState()
	if st != connectivity.Idle && st != connectivity.Connecting {
		return nil // ready, or failing: the call answers or fails at once
	}
	if !c.balancer.BeginPending() {
		return pickError{c.balancer.ErrPendingFull()}
	}
	defer c.balancer.EndPending()
	cc.Connect()
	for st == connectivity.Idle || st == connectivity.Connecting {
		if !cc.WaitForStateChange(ctx, st) {
			return nil // the context ended: the call reports it
		}
		st = cc.GetState()
	}
	return nil
}

// keyedContext carries what the balancer reads from a call's request
// metadata and method (a sticky session id, a hash key) into its context.
func (c *LoadBalancedClient) keyedContext(ctx context.Context, method string) context.Context {
	if !c.balancer.ReadsRequest() {
		return ctx
	}
	return c.balancer.KeyedContext(ctx, method, outgoingMetadata(ctx))
}

// outgoingMetadata returns a getter of ctx's outgoing metadata values.
func outgoingMetadata(ctx context.Context) func(string) []string {
	md, _ := metadata.FromOutgoingContext(ctx)
	return md.Get
}

// NewStream opens a stream through the balancer. Opening is retried like a
// unary call; for streams whose client sends one message (server
// streaming), a retryable failure before any response also reopens the
// stream on another endpoint and sends that message again.
func (c *LoadBalancedClient) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if c.closed.Load() {
		return nil, status.Error(codes.Canceled, "load balanced client is closed")
	}
	c.calls.Add(1)
	s := &balancedStream{
		c: c, ctx: c.keyedContext(ctx, method), desc: desc, method: method, opts: opts,
		report: findReport(opts), start: time.Now(),
	}
	c.limiter().Call(s.start)
	for attempt := 1; ; attempt++ {
		err := s.open()
		if err == nil {
			s.attempt = attempt
			return s, nil
		}
		if !c.backoff(ctx, err, noPushback, attempt, s.start, s.report) {
			c.failures.Add(1)
			return nil, err
		}
	}
}

type balancedStream struct {
	grpc.ClientStream // the current attempt's stream
	c                 *LoadBalancedClient
	ctx               context.Context
	desc              *grpc.StreamDesc
	method            string
	opts              []grpc.CallOption
	report            *CallReport
	start             time.Time
	attempt           int

	cancel    context.CancelFunc // ends the current attempt
	endpoint  *lb.Endpoint
	conn      *pooledConn // held while the attempt runs
	opened    time.Time
	tried     []*lb.Endpoint
	stopAfter func() bool
	done      atomic.Bool

	// For replay: what a non-client-streaming caller has sent so far.
	request   any
	sentClose bool
	committed bool  // a response began: never retry from here
	final     error // how the stream ended; later RecvMsg calls repeat it
	mu        sync.Mutex
}

// open picks an endpoint and starts the stream there.
func (s *balancedStream) open() error {
	e, err := s.c.balancer.PickExcluding(s.ctx, s.tried)
	if err != nil {
		return pickError{err}
	}
	s.opened = time.Now()
	pc, err := s.c.pool.hold(e)
	if err != nil {
		err = status.Error(codes.Unavailable, err.Error())
		s.failOpen(e, err)
		return err
	}
	ctx, cancel := context.WithCancel(s.ctx)
	cs, err := pc.cc.NewStream(ctx, s.desc, s.method, s.opts...)
	if err != nil {
		cancel()
		pc.release()
		s.failOpen(e, err)
		return err
	}
	s.ClientStream, s.endpoint, s.cancel, s.conn = cs, e, cancel, pc
	// A caller that abandons the stream must cancel its context (gRPC's
	// rule); that ends the attempt and releases the endpoint too.
	s.stopAfter = context.AfterFunc(ctx, s.finish)
	return nil
}

// failOpen ends an attempt that could not open the stream.
func (s *balancedStream) failOpen(e *lb.Endpoint, err error) {
	took := time.Since(s.opened)
	s.c.balancer.Done(e, took, s.c.classify(s.ctx, err))
	s.c.measure(s.ctx, s.method, e, took, err)
	s.report.add(e, took, err)
	s.c.limiter().Result(false, s.c.retryable(err))
	s.tried = append(s.tried, e)
}

// finish ends the current attempt's pick once, with its outcome. A stream
// abandoned by its caller (its context cancelled) ends neutral.
func (s *balancedStream) finish() {
	s.finishWith(context.Canceled)
}

func (s *balancedStream) finishWith(err error) {
	if s.done.CompareAndSwap(false, true) {
		outcome := lb.Neutral
		if err == nil || err == io.EOF {
			outcome = lb.Success
		} else if err != context.Canceled {
			outcome = s.c.classify(s.ctx, err)
		}
		s.c.balancer.Done(s.endpoint, time.Since(s.opened), outcome)
		s.conn.release()
		s.conn = nil
	}
}

func (s *balancedStream) SendMsg(m any) error {
	if !s.desc.ClientStreams {
		s.mu.Lock()
		s.request = m
		s.mu.Unlock()
	}
	return s.ClientStream.SendMsg(m)
}

func (s *balancedStream) CloseSend() error {
	s.mu.Lock()
	s.sentClose = true
	s.mu.Unlock()
	return s.ClientStream.CloseSend()
}

func (s *balancedStream) Header() (metadata.MD, error) {
	md, err := s.ClientStream.Header()
	if err == nil && md != nil {
		s.mu.Lock()
		s.committed = true
		s.mu.Unlock()
	}
	return md, err
}

func (s *balancedStream) RecvMsg(m any) error {
	if s.final != nil {
		return s.final
	}
	for {
		err := s.ClientStream.RecvMsg(m)
		s.mu.Lock()
		if err == nil {
			s.committed = true
			s.mu.Unlock()
			return nil
		}
		retry := !s.committed && !s.desc.ClientStreams && err != io.EOF
		s.mu.Unlock()
		s.endAttempt(err)
		if err == io.EOF {
			s.final = err
			return err
		}
		if !retry || !s.c.backoff(s.ctx, err, noPushback, s.attempt, s.start, s.report) || !s.reopen() {
			s.c.failures.Add(1)
			s.final = err
			return err
		}
	}
}

// endAttempt records the attempt's outcome and frees its endpoint.
func (s *balancedStream) endAttempt(err error) {
	if s.stopAfter != nil {
		s.stopAfter()
	}
	if err == io.EOF {
		err = nil
	}
	took := time.Since(s.opened)
	s.c.measure(s.ctx, s.method, s.endpoint, took, err)
	s.report.add(s.endpoint, took, err)
	s.c.limiter().Result(err == nil, err != nil && s.c.retryable(err))
	if err != nil {
		s.tried = append(s.tried, s.endpoint)
	}
	s.finishWith(err)
	s.cancel()
}

// reopen starts the stream on another endpoint and replays the request.
func (s *balancedStream) reopen() bool {
	s.attempt++
	s.done.Store(false)
	if err := s.open(); err != nil {
		return false
	}
	s.mu.Lock()
	req, closeSend := s.request, s.sentClose
	s.mu.Unlock()
	if req != nil && s.ClientStream.SendMsg(req) != nil {
		return true // the error surfaces from RecvMsg, which retries or reports it
	}
	if closeSend {
		_ = s.ClientStream.CloseSend()
	}
	return true
}

// ClientStats is a LoadBalancedClient's state; its JSON keys are those of
// the original design's GetStats.
type ClientStats struct {
	TotalConnections int    `json:"total_connections"`
	MaxRetries       int    `json:"max_retries"`
	RetryDelay       string `json:"retry_delay"`
	FailoverTimeout  string `json:"failover_timeout"`
	CallStats
	LoadBalancer lb.ServerStats `json:"load_balancer"`
}

// GetStats returns the client's statistics.
func (c *LoadBalancedClient) GetStats() ClientStats {
	cfg := c.cfg.Load()
	return ClientStats{
		TotalConnections: c.pool.Len(),
		MaxRetries:       cfg.MaxRetries,
		RetryDelay:       cfg.Delay.String(),
		FailoverTimeout:  cfg.FailoverTimeout.String(),
		CallStats:        c.stats(),
		LoadBalancer:     c.balancer.GetServerStats(),
	}
}

// Close closes the client's own connections. Calls made after Close fail
// with CANCELED.
func (c *LoadBalancedClient) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	c.loadsMu.Lock()
	if c.loads != nil {
		c.loads.Close()
		c.loads = nil
	}
	c.loadsMu.Unlock()
	if c.ownPool {
		if err := c.pool.Close(); err != nil && !errors.Is(err, ErrClosed) {
			return err
		}
	}
	return nil
}
