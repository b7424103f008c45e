package rpc

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/policy"
	"github.com/peervault/pvlb/pkg/telemetry"
)

// ChannelCalls retries and hedges the unary calls of a grpc-go channel on
// pvlb's policy ("pvlb:///SERVICE", see grpcpolicy) as LoadBalancedClient
// does its own: the retry policy with its budget or throttling, per-try
// timeouts, pushback and hedging, each retry or hedge on an endpoint the
// call has not tried. Install its interceptor, and turn grpc-go's own
// retries off so that calls are not retried twice:
//
//	calls, err := rpc.NewChannelCalls(svc.Retry, svc.Hedging, logger)
//	cc, err := grpc.NewClient("pvlb:///peervault",
//		grpc.WithResolvers(grpcpolicy.NewResolverBuilder(balancer)),
//		grpc.WithUnaryInterceptor(calls.UnaryInterceptor()),
//		grpc.WithStreamInterceptor(calls.StreamInterceptor()),
//		grpc.WithDisableRetry(),
//		grpc.WithTransportCredentials(insecure.NewCredentials()))
type ChannelCalls struct {
	r *retrier
}

// UseMetrics records every attempt's duration and the calls' counts in m.
func (c *ChannelCalls) UseMetrics(m *telemetry.Metrics) { c.r.useMetrics(m) }

// NewChannelCalls returns the retries and hedging of one channel.
func NewChannelCalls(retry policy.Retry, hedging *policy.Hedging, logger *slog.Logger) (*ChannelCalls, error) {
	r, err := newRetrier(retry, hedging, logger)
	if err != nil {
		return nil, err
	}
	return &ChannelCalls{r: r}, nil
}

// Reconfigure makes later decisions follow retry and hedging; an
// unchanged retry block keeps its budget's state. An invalid one changes
// nothing.
func (c *ChannelCalls) Reconfigure(retry policy.Retry, hedging *policy.Hedging) error {
	return c.r.setPolicy(retry, hedging)
}

// UnaryInterceptor returns the interceptor that runs the channel's unary
// calls.
func (c *ChannelCalls) UnaryInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		attempt := func(ctx context.Context, method string, args, reply any, tried []*lb.Endpoint, opts []grpc.CallOption, picked func(*lb.Endpoint)) (*lb.Endpoint, error) {
			var got *lb.Endpoint
			a := &lb.Attempt{Tried: tried, Picked: func(e *lb.Endpoint) {
				got = e
				if picked != nil {
					picked(e)
				}
			}}
			err := invoker(lb.WithAttempt(ctx, a), method, args, reply, cc, opts...)
			a.Waited() // the call may have ended while it waited for a connection
			return got, err
		}
		return c.r.invoke(ctx, method, req, reply, opts, attempt)
	}
}

// StreamInterceptor returns the interceptor that counts the channel's
// streams as calls and, with UseMetrics, times each as one attempt on the
// endpoint the policy picked, from its opening to its end. It retries
// nothing: grpc-go's retry policy may reopen a stream before its first
// response. Install it with grpc.WithStreamInterceptor.
func (c *ChannelCalls) StreamInterceptor() grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		c.r.calls.Add(1)
		s := &timedStream{r: c.r, ctx: ctx, method: method, start: time.Now()}
		a := &lb.Attempt{Picked: func(e *lb.Endpoint) { s.endpoint = e }}
		cs, err := streamer(lb.WithAttempt(ctx, a), desc, cc, method, opts...)
		a.Waited()
		if err != nil {
			s.end(err)
			return nil, err
		}
		s.ClientStream = cs
		return s, nil
	}
}

// timedStream records its stream's end once: its duration and status.
type timedStream struct {
	grpc.ClientStream
	r        *retrier
	ctx      context.Context
	method   string
	start    time.Time
	endpoint *lb.Endpoint // set by the pick, before the stream opens
	once     sync.Once
}

func (s *timedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil {
		s.end(err)
	}
	return err
}

func (s *timedStream) end(err error) {
	s.once.Do(func() {
		if err == io.EOF {
			err = nil
		}
		if err != nil {
			s.r.failures.Add(1)
		}
		s.r.measure(s.ctx, s.method, s.endpoint, time.Since(s.start), err)
	})
}

// CallStats counts what a channel's calls did: calls, retries and those
// the budget refused, failures, hedges and hedges that answered first.
type CallStats struct {
	Calls          uint64 `json:"calls"`
	Retries        uint64 `json:"retries"`
	RetriesRefused uint64 `json:"retries_refused"`
	Failures       uint64 `json:"failures"`
	Hedges         uint64 `json:"hedges,omitempty"`
	HedgeWins      uint64 `json:"hedge_wins,omitempty"`
}

// Stats returns the channel's call counts.
func (c *ChannelCalls) Stats() CallStats { return c.r.stats() }

func (r *retrier) stats() CallStats {
	return CallStats{Calls: r.calls.Load(), Retries: r.retries.Load(), RetriesRefused: r.refused(),
		Failures: r.failures.Load(), Hedges: r.hedges.Load(), HedgeWins: r.hedgeWins.Load()}
}
