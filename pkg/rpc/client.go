package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/policy"
	"github.com/peervault/pvlb/pkg/statuscode"
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
	balancer   *lb.LoadBalancer
	pool       *ConnPool
	ownPool    bool
	cfg        LoadBalancedClientConfig
	log        *slog.Logger
	outcomes   lb.OutcomeConfig
	sessionKey string // metadata key of the sticky session id; "" when not sticky
	limiter    *lb.RetryLimiter

	calls, retries, failures atomic.Uint64
	hedges, hedgeWins        atomic.Uint64
	closed                   atomic.Bool
}

var _ grpc.ClientConnInterface = (*LoadBalancedClient)(nil)

// ClientOption adjusts a LoadBalancedClient.
type ClientOption func(*clientOptions)

type clientOptions struct {
	pool     *ConnPool
	dialOpts []grpc.DialOption
}

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
	c := &LoadBalancedClient{
		balancer: balancer,
		pool:     o.pool,
		cfg:      *config,
		log:      loggerOrDiscard(logger),
	}
	c.outcomes = balancer.Config().Outcomes
	var err error
	if c.limiter, err = config.Retry.Limiter(time.Now()); err != nil {
		return nil, err
	}
	if sticky := balancer.Config().Sticky; sticky.Enabled {
		c.sessionKey = sticky.Key
	}
	if c.pool == nil {
		pool, err := NewConnPool(balancer, &config.Client, logger, o.dialOpts...)
		if err != nil {
			return nil, err
		}
		c.pool, c.ownPool = pool, true
	}
	return c, nil
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
	return c.outcomes.Classify(statuscode.Code(status.Code(err)), errors.Is(ctx.Err(), context.Canceled))
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
	ctx = c.sessionContext(ctx)
	report := findReport(opts)
	c.calls.Add(1)
	start := time.Now()
	c.limiter.Call(start)
	if h := c.cfg.Hedging; h.Hedges(method) {
		if msg, ok := reply.(proto.Message); ok {
			return c.invokeHedged(ctx, h, method, args, msg, opts, report)
		}
	}
	var triedList []*lb.Endpoint // nil until a retry: a first attempt allocates nothing
	for attempt := 1; ; attempt++ {
		pushback, err := c.invokeOnce(ctx, method, args, reply, opts, report, &triedList)
		if err == nil {
			return nil
		}
		if !c.backoff(ctx, err, pushback, attempt, start, report) {
			c.failures.Add(1)
			return err
		}
	}
}

// hedgeResult is one hedged copy's answer.
type hedgeResult struct {
	e     *lb.Endpoint
	reply proto.Message
	took  time.Duration
	err   error
	hedge bool // not the first copy
}

// invokeHedged sends a unary call as gRFC A6 hedges it: a copy now, and
// another on a different endpoint whenever Delay passes without an answer
// or a copy fails with a non-fatal code, up to MaxAttempts; the first
// good answer wins and the rest are cancelled (their outcomes neutral).
// Each hedge needs the retry budget's leave.
func (c *LoadBalancedClient) invokeHedged(ctx context.Context, h *policy.Hedging, method string, args any, reply proto.Message, opts []grpc.CallOption, report *CallReport) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan hedgeResult, h.MaxAttempts) // copies never block on a call that returned
	var tried []*lb.Endpoint
	var lastErr error
	sent, pending := 0, 0
	send := func() bool {
		if sent > 0 && !c.limiter.Retry(time.Now()) {
			if report != nil {
				report.NotRetried = "the retry budget is spent"
			}
			return false
		}
		e, err := c.balancer.PickExcluding(ctx, tried)
		if err != nil {
			lastErr = pickError{err}
			return false
		}
		tried = append(tried, e)
		hedge := sent > 0
		sent++
		pending++
		if hedge {
			c.hedges.Add(1)
		}
		copyReply := reply.ProtoReflect().New().Interface()
		go func() {
			started := time.Now()
			cc, err := c.pool.Get(e)
			if err == nil {
				err = cc.Invoke(ctx, method, args, copyReply, opts...)
			} else {
				err = status.Error(codes.Unavailable, err.Error())
			}
			took := time.Since(started)
			c.balancer.Done(e, took, c.classify(ctx, err))
			results <- hedgeResult{e: e, reply: copyReply, took: took, err: err, hedge: hedge}
		}()
		return true
	}
	if !send() {
		c.failures.Add(1)
		return lastErr
	}
	var timer *time.Timer
	var tick <-chan time.Time
	if h.MaxAttempts > 1 {
		if h.Delay == 0 {
			for sent < h.MaxAttempts && send() {
			}
		} else {
			timer = time.NewTimer(h.Delay)
			defer timer.Stop()
			tick = timer.C
		}
	}
	for pending > 0 {
		select {
		case <-tick:
			if sent < h.MaxAttempts && send() && sent < h.MaxAttempts {
				timer.Reset(h.Delay)
			}
		case r := <-results:
			pending--
			report.add(r.e, r.took, r.err)
			if r.err == nil {
				proto.Reset(reply)
				proto.Merge(reply, r.reply)
				c.limiter.Result(true, false)
				if r.hedge {
					c.hedgeWins.Add(1)
				}
				return nil
			}
			lastErr = r.err
			code := statuscode.Code(status.Code(r.err))
			c.limiter.Result(false, h.NonFatalCodes.Has(code))
			if !h.NonFatalCodes.Has(code) {
				if report != nil {
					report.NotRetried = code.String() + " is fatal to a hedged call (non_fatal_codes)"
				}
				c.failures.Add(1)
				return r.err
			}
			if sent < h.MaxAttempts {
				send()
			}
		}
	}
	c.failures.Add(1)
	return lastErr
}

// attemptOpts carries an attempt's call options with a trailer option
// added, to read the server's pushback; pooled so that a call allocates
// nothing for it.
type attemptOpts struct {
	trailer metadata.MD
	read    grpc.CallOption // grpc.Trailer(&trailer)
	opts    []grpc.CallOption
}

var attemptOptsPool = sync.Pool{New: func() any {
	ao := new(attemptOpts)
	ao.read = grpc.Trailer(&ao.trailer)
	return ao
}}

// pushbackKey is gRFC A6's trailer: how long the server asks the client to
// wait before retrying, in milliseconds; a negative or unreadable value
// asks it not to retry.
const pushbackKey = "grpc-retry-pushback-ms"

// invokeOnce makes one attempt, and returns the server's pushback
// (noPushback when it sent none) and the attempt's error.
func (c *LoadBalancedClient) invokeOnce(ctx context.Context, method string, args, reply any, opts []grpc.CallOption, report *CallReport, triedList *[]*lb.Endpoint) (time.Duration, error) {
	e, err := c.balancer.PickExcluding(ctx, *triedList)
	if err != nil {
		return noPushback, pickError{err}
	}
	started := time.Now()
	pushback := noPushback
	cc, err := c.pool.Get(e)
	if err == nil {
		actx := ctx
		if c.cfg.PerTryTimeout > 0 {
			var cancel context.CancelFunc
			actx, cancel = context.WithTimeout(ctx, c.cfg.PerTryTimeout)
			defer cancel()
		}
		ao := attemptOptsPool.Get().(*attemptOpts)
		ao.opts = append(append(ao.opts[:0], opts...), ao.read)
		err = cc.Invoke(actx, method, args, reply, ao.opts...)
		if err != nil {
			pushback = parsePushback(ao.trailer)
			// The attempt's own deadline passed, not the call's: the server
			// may report it (its end of the deadline) before our timer does.
			if actx != ctx && ctx.Err() == nil && status.Code(err) == codes.DeadlineExceeded && pastDeadline(actx) {
				err = perTryTimeout{status.Newf(codes.DeadlineExceeded, "per-try timeout: no answer from %s within %s", e.ID, c.cfg.PerTryTimeout)}
			}
		}
		clear(ao.opts)
		ao.trailer = nil
		attemptOptsPool.Put(ao)
	} else {
		err = status.Error(codes.Unavailable, err.Error())
	}
	took := time.Since(started)
	c.balancer.Done(e, took, c.classify(ctx, err))
	c.limiter.Result(err == nil, err != nil && c.retryable(err))
	report.add(e, took, err)
	if err != nil {
		*triedList = append(*triedList, e)
		c.log.Debug("call failed", "method", method, "server", e.ID, "error", err)
	}
	return pushback, err
}

func pastDeadline(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// Pushbacks other than a wait: none sent, or the server's "do not retry".
const (
	noPushback   time.Duration = -1
	pushbackStop time.Duration = -2
)

// parsePushback reads A6's pushback from trailers: the wait, noPushback,
// or pushbackStop for a negative or malformed value.
func parsePushback(md metadata.MD) time.Duration {
	v := md.Get(pushbackKey)
	if len(v) == 0 {
		return noPushback
	}
	ms, err := strconv.ParseInt(v[0], 10, 64)
	if err != nil || ms < 0 {
		return pushbackStop
	}
	return time.Duration(ms) * time.Millisecond
}

// perTryTimeout is an attempt ended by the retry policy's per-try
// timeout, as opposed to the call's own deadline.
type perTryTimeout struct{ st *status.Status }

func (e perTryTimeout) Error() string              { return e.st.Err().Error() }
func (e perTryTimeout) GRPCStatus() *status.Status { return e.st }

// retryable reports whether an attempt's error is one to retry: a
// retryable code, or the attempt's own per-try timeout.
func (c *LoadBalancedClient) retryable(err error) bool {
	var pt perTryTimeout
	return c.cfg.Retries(statuscode.Code(status.Code(err))) || errors.As(err, &pt)
}

// backoff decides whether a failed attempt is retried and, if so, waits
// first: the server's pushback when it sent one, else the retry policy's
// backoff with ±20% jitter. It reports whether to try again, and why not
// in the report.
func (c *LoadBalancedClient) backoff(ctx context.Context, err error, pushback time.Duration, attempt int, start time.Time, report *CallReport) bool {
	stop := func(why string) bool {
		if report != nil {
			report.NotRetried = why
		}
		return false
	}
	switch {
	case ctx.Err() != nil:
		return stop("the call's context ended")
	case !c.retryable(err):
		return stop(statuscode.Code(status.Code(err)).String() + " is not retried (retryable_codes)")
	case attempt > c.cfg.MaxRetries:
		return stop(fmt.Sprintf("max_retries (%d) reached", c.cfg.MaxRetries))
	case pushback == pushbackStop:
		return stop("the server asked not to retry (" + pushbackKey + ")")
	}
	delay := pushback
	if delay < 0 {
		delay = policy.Jitter(c.cfg.Backoff(attempt), rand.Float64())
	}
	now := time.Now()
	if now.Sub(start)+delay > c.cfg.FailoverTimeout {
		return stop(fmt.Sprintf("failover_timeout (%s) would pass", c.cfg.FailoverTimeout))
	}
	if deadline, ok := ctx.Deadline(); ok && now.Add(delay).After(deadline) {
		return stop("the call's deadline would pass")
	}
	if !c.limiter.Retry(now) {
		return stop("the retry budget is spent")
	}
	c.retries.Add(1)
	if delay <= 0 {
		return true
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return stop("the call's context ended")
	}
}

// sessionContext carries a session id from request metadata into the
// context, when the context has none and a metadata key is configured.
func (c *LoadBalancedClient) sessionContext(ctx context.Context) context.Context {
	if c.sessionKey == "" {
		return ctx
	}
	if _, ok := lb.SessionFromContext(ctx); ok {
		return ctx
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	if v := md.Get(c.sessionKey); len(v) > 0 && v[0] != "" {
		return lb.WithSession(ctx, v[0])
	}
	return ctx
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
		c: c, ctx: c.sessionContext(ctx), desc: desc, method: method, opts: opts,
		report: findReport(opts), start: time.Now(),
	}
	c.limiter.Call(s.start)
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
	cc, err := s.c.pool.Get(e)
	if err != nil {
		err = status.Error(codes.Unavailable, err.Error())
		s.failOpen(e, err)
		return err
	}
	ctx, cancel := context.WithCancel(s.ctx)
	cs, err := cc.NewStream(ctx, s.desc, s.method, s.opts...)
	if err != nil {
		cancel()
		s.failOpen(e, err)
		return err
	}
	s.ClientStream, s.endpoint, s.cancel = cs, e, cancel
	// A caller that abandons the stream must cancel its context (gRPC's
	// rule); that ends the attempt and releases the endpoint too.
	s.stopAfter = context.AfterFunc(ctx, s.finish)
	return nil
}

// failOpen ends an attempt that could not open the stream.
func (s *balancedStream) failOpen(e *lb.Endpoint, err error) {
	took := time.Since(s.opened)
	s.c.balancer.Done(e, took, s.c.classify(s.ctx, err))
	s.report.add(e, took, err)
	s.c.limiter.Result(false, s.c.retryable(err))
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
	s.report.add(s.endpoint, time.Since(s.opened), err)
	s.c.limiter.Result(err == nil, err != nil && s.c.retryable(err))
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
	Calls            uint64 `json:"calls"`
	Retries          uint64 `json:"retries"`
	// RetriesRefused counts retries the retry budget or throttling did
	// not allow.
	RetriesRefused uint64 `json:"retries_refused"`
	Failures       uint64 `json:"failures"`
	// Hedges counts hedged copies sent after a call's first, and
	// HedgeWins those that answered first.
	Hedges       uint64         `json:"hedges,omitempty"`
	HedgeWins    uint64         `json:"hedge_wins,omitempty"`
	LoadBalancer lb.ServerStats `json:"load_balancer"`
}

// GetStats returns the client's statistics.
func (c *LoadBalancedClient) GetStats() ClientStats {
	return ClientStats{
		TotalConnections: c.pool.Len(),
		MaxRetries:       c.cfg.MaxRetries,
		RetryDelay:       c.cfg.Delay.String(),
		FailoverTimeout:  c.cfg.FailoverTimeout.String(),
		Calls:            c.calls.Load(),
		Retries:          c.retries.Load(),
		RetriesRefused:   c.limiter.Refused(),
		Hedges:           c.hedges.Load(),
		HedgeWins:        c.hedgeWins.Load(),
		Failures:         c.failures.Load(),
		LoadBalancer:     c.balancer.GetServerStats(),
	}
}

// Close closes the client's own connections. Calls made after Close fail
// with CANCELED.
func (c *LoadBalancedClient) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	if c.ownPool {
		if err := c.pool.Close(); err != nil && !errors.Is(err, ErrClosed) {
			return err
		}
	}
	return nil
}
