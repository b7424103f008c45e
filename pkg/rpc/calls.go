package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
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
	"github.com/peervault/pvlb/pkg/telemetry"
)

// attemptFunc makes one attempt of a unary call on an endpoint not in
// tried, and returns the endpoint it went to (nil when the pick failed)
// and the attempt's error; picked, when set, learns the endpoint as soon
// as it is picked. Each live path has one: LoadBalancedClient's calls its
// own connections, the channel interceptor's its invoker.
type attemptFunc func(ctx context.Context, method string, args, reply any, tried []*lb.Endpoint, opts []grpc.CallOption, picked func(*lb.Endpoint)) (*lb.Endpoint, error)

// retrier runs a unary call's attempts as the service's retry policy,
// retry budget and hedging say, whatever path the attempts take.
type retrier struct {
	policy atomic.Pointer[retryPolicy]
	// refusedBefore counts the retries refused by limiters replaced by
	// setPolicy, so that the count never goes back; swap guards it and
	// the swap.
	swap          sync.Mutex
	refusedBefore uint64
	log           *slog.Logger

	calls, retries, failures atomic.Uint64
	hedges, hedgeWins        atomic.Uint64

	metrics *telemetry.Metrics // nil without metrics
}

// useMetrics records every attempt's duration in m, and counts the calls
// there.
func (r *retrier) useMetrics(m *telemetry.Metrics) {
	r.metrics = m
	m.ObserveCalls(func() telemetry.CallCounts {
		s := r.stats()
		return telemetry.CallCounts{Calls: s.Calls, Retries: s.Retries, RetriesRefused: s.RetriesRefused, Hedges: s.Hedges, HedgeWins: s.HedgeWins}
	})
}

// measure records an attempt's duration when there are metrics.
func (r *retrier) measure(ctx context.Context, method string, e *lb.Endpoint, took time.Duration, err error) {
	if r.metrics != nil && e != nil {
		r.metrics.Attempt(ctx, method, e, statuscode.Code(status.Code(err)), took)
	}
}

// retryPolicy is what a retrier runs by; setPolicy swaps it whole, and a
// call in progress reads it at each decision.
type retryPolicy struct {
	retry   policy.Retry
	hedging *policy.Hedging
	limiter *lb.RetryLimiter
}

func newRetrier(retry policy.Retry, hedging *policy.Hedging, log *slog.Logger) (*retrier, error) {
	r := &retrier{log: loggerOrDiscard(log)}
	if err := r.setPolicy(retry, hedging); err != nil {
		return nil, err
	}
	return r, nil
}

// setPolicy makes later decisions follow retry and hedging. An unchanged
// retry block keeps its budget's and throttling's state.
func (r *retrier) setPolicy(retry policy.Retry, hedging *policy.Hedging) error {
	if err := hedging.Validate(); err != nil {
		return err
	}
	r.swap.Lock()
	defer r.swap.Unlock()
	prev := r.policy.Load()
	p := &retryPolicy{retry: retry, hedging: hedging}
	if prev != nil && reflect.DeepEqual(prev.retry, retry) {
		p.limiter = prev.limiter
	} else {
		var err error
		if p.limiter, err = retry.Limiter(time.Now()); err != nil {
			return err
		}
	}
	if prev != nil && prev.limiter != p.limiter {
		r.refusedBefore += prev.limiter.Refused()
	}
	r.policy.Store(p)
	return nil
}

// refused counts the retries the budget or throttling refused.
func (r *retrier) refused() uint64 {
	r.swap.Lock()
	defer r.swap.Unlock()
	return r.limiter().Refused() + r.refusedBefore
}

// limiter is the retry budget and throttling now in force.
func (r *retrier) limiter() *lb.RetryLimiter { return r.policy.Load().limiter }

// invoke runs a unary call: hedged when its method is, else retried.
func (r *retrier) invoke(ctx context.Context, method string, args, reply any, opts []grpc.CallOption, attempt attemptFunc) error {
	report := findReport(opts)
	r.calls.Add(1)
	start := time.Now()
	r.limiter().Call(start)
	if r.policy.Load().hedging.Hedges(method) {
		if msg, ok := reply.(proto.Message); ok {
			return r.invokeHedged(ctx, method, args, msg, opts, report, attempt)
		}
	}
	var tried []*lb.Endpoint // nil until a retry: a first attempt allocates nothing
	for n := 1; ; n++ {
		e, pushback, err := r.once(ctx, method, args, reply, tried, opts, report, attempt)
		if err == nil {
			return nil
		}
		if e != nil {
			tried = append(tried, e)
		}
		if !r.backoff(ctx, err, pushback, n, start, report) {
			r.failures.Add(1)
			return err
		}
	}
}

// once makes one attempt within the per-try timeout, reading the server's
// pushback, and records it: the limiter's tokens, the call report.
func (r *retrier) once(ctx context.Context, method string, args, reply any, tried []*lb.Endpoint, opts []grpc.CallOption, report *CallReport, attempt attemptFunc) (*lb.Endpoint, time.Duration, error) {
	actx := ctx
	perTry := r.policy.Load().retry.PerTryTimeout
	if perTry > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, perTry)
		defer cancel()
	}
	ao := attemptOptsPool.Get().(*attemptOpts)
	defer ao.release()
	ao.opts = append(append(ao.opts[:0], opts...), ao.read)
	started := time.Now()
	e, err := attempt(actx, method, args, reply, tried, ao.opts, nil)
	took := time.Since(started)
	pushback := noPushback
	if err != nil && e != nil {
		pushback = parsePushback(ao.trailer)
		// The attempt's own deadline passed, not the call's: the server
		// may report it (its end of the deadline) before our timer does.
		if actx != ctx && ctx.Err() == nil && status.Code(err) == codes.DeadlineExceeded && pastDeadline(actx) {
			err = perTryTimeout{status.Newf(codes.Code(policy.PerTryCode), "per-try timeout: no answer from %s within %s", e.ID, perTry)}
		}
	}
	r.limiter().Result(err == nil, err != nil && r.retryable(err))
	r.measure(ctx, method, e, took, err)
	if e != nil {
		report.add(e, took, err)
		if err != nil {
			r.log.Debug("call failed", "method", method, "server", e.ID, "error", err)
		}
	}
	return e, pushback, err
}

// hedgeCopy is one hedged copy of a call: where it went, and its answer
// once it has one.
type hedgeCopy struct {
	e       *lb.Endpoint
	started time.Time
	took    time.Duration
	err     error
	done    bool
}

// hedgeResult is a copy's answer, by its place in the order sent.
type hedgeResult struct {
	i     int
	e     *lb.Endpoint
	reply proto.Message
	took  time.Duration
	err   error
}

// errOvertaken is the report's word on a copy still waiting when another
// answered first, or the call failed.
var errOvertaken = status.Error(codes.Canceled, "cancelled: the call ended on another copy")

// invokeHedged sends a unary call as gRFC A6 hedges it: a copy now, and
// another on a different endpoint whenever Delay passes without an answer
// or a copy fails with a non-fatal code, up to MaxAttempts; the first
// good answer wins and the rest are cancelled (their outcomes neutral).
// Each hedge needs the retry budget's leave.
func (r *retrier) invokeHedged(ctx context.Context, method string, args any, reply proto.Message, opts []grpc.CallOption, report *CallReport, attempt attemptFunc) error {
	h := r.policy.Load().hedging
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan hedgeResult, h.MaxAttempts) // copies never block on a call that returned
	var tried []*lb.Endpoint
	var lastErr error
	sent, pending := 0, 0
	copies := make([]hedgeCopy, 0, h.MaxAttempts)
	// Every copy goes in the report, in the order sent, those that had not
	// answered when the call ended too.
	defer func() {
		if report == nil {
			return
		}
		for i, c := range copies {
			if c.e == nil {
				continue
			}
			if !c.done {
				c.took, c.err = time.Since(c.started), errOvertaken
			}
			report.add(c.e, c.took, c.err)
			report.Attempts[len(report.Attempts)-1].Hedge = i > 0
		}
	}()
	send := func() bool {
		if sent > 0 && !r.limiter().Retry(time.Now()) {
			if report != nil {
				report.NotRetried = "the retry budget is spent"
			}
			return false
		}
		i := sent
		copyReply := reply.ProtoReflect().New().Interface()
		pickedCh := make(chan *lb.Endpoint, 1)
		var once sync.Once
		note := func(e *lb.Endpoint) { once.Do(func() { pickedCh <- e }) }
		snapshot := tried[:len(tried):len(tried)]
		started := time.Now()
		go func() {
			e, err := attempt(ctx, method, args, copyReply, snapshot, opts, note)
			note(e)
			took := time.Since(started)
			r.measure(ctx, method, e, took, err)
			results <- hedgeResult{i: i, e: e, reply: copyReply, took: took, err: err}
		}()
		// The next copy must avoid this one's endpoint: wait for the pick,
		// which comes first and fast, not for the call.
		e := <-pickedCh
		if e != nil {
			tried = append(tried, e)
		}
		copies = append(copies, hedgeCopy{e: e, started: started})
		sent++
		pending++
		if i > 0 {
			r.hedges.Add(1)
		}
		return true
	}
	send()
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
		case res := <-results:
			pending--
			c := &copies[res.i]
			c.e, c.took, c.err, c.done = res.e, res.took, res.err, true
			if res.err == nil {
				proto.Reset(reply)
				proto.Merge(reply, res.reply)
				r.limiter().Result(true, false)
				if res.i > 0 {
					r.hedgeWins.Add(1)
				}
				return nil
			}
			lastErr = res.err
			code := statuscode.Code(status.Code(res.err))
			nonFatal := h.NonFatalCodes.Has(code)
			r.limiter().Result(false, nonFatal)
			if !nonFatal {
				if report != nil {
					report.NotRetried = code.String() + " is fatal to a hedged call (non_fatal_codes)"
				}
				r.failures.Add(1)
				return res.err
			}
			if sent < h.MaxAttempts {
				send()
			}
		}
	}
	r.failures.Add(1)
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

func (ao *attemptOpts) release() {
	clear(ao.opts)
	ao.trailer = nil
	attemptOptsPool.Put(ao)
}

// pushbackKey is gRFC A6's trailer: how long the server asks the client to
// wait before retrying, in milliseconds; a negative or unreadable value
// asks it not to retry.
const pushbackKey = "grpc-retry-pushback-ms"

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
func (r *retrier) retryable(err error) bool {
	var pt perTryTimeout
	return r.policy.Load().retry.Retries(statuscode.Code(status.Code(err))) || errors.As(err, &pt)
}

// backoff decides whether a failed attempt is retried and, if so, waits
// first: the server's pushback when it sent one, else the retry policy's
// backoff with ±20% jitter. It reports whether to try again, and why not
// in the report.
func (r *retrier) backoff(ctx context.Context, err error, pushback time.Duration, attempt int, start time.Time, report *CallReport) bool {
	stop := func(why string) bool {
		if report != nil {
			report.NotRetried = why
		}
		return false
	}
	retry := &r.policy.Load().retry
	switch {
	case ctx.Err() != nil:
		return stop("the call's context ended")
	case !r.retryable(err):
		return stop(statuscode.Code(status.Code(err)).String() + " is not retried (retryable_codes)")
	case attempt > retry.MaxRetries:
		return stop(fmt.Sprintf("max_retries (%d) reached", retry.MaxRetries))
	case pushback == pushbackStop:
		return stop("the server asked not to retry (" + pushbackKey + ")")
	}
	delay := pushback
	if delay < 0 {
		delay = policy.Jitter(retry.Backoff(attempt), rand.Float64())
	}
	now := time.Now()
	if now.Sub(start)+delay > retry.FailoverTimeout {
		return stop(fmt.Sprintf("failover_timeout (%s) would pass", retry.FailoverTimeout))
	}
	if deadline, ok := ctx.Deadline(); ok && now.Add(delay).After(deadline) {
		return stop("the call's deadline would pass")
	}
	if !r.limiter().Retry(now) {
		return stop("the retry budget is spent")
	}
	r.retries.Add(1)
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
