package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/policy"
)

// ErrClosed is returned by a closed ConnPool or LoadBalancedClient.
var ErrClosed = errors.New("closed")

// ConnPool keeps one gRPC connection per endpoint of a LoadBalancer, shared
// by the LoadBalancedClient and the HealthChecker, so every endpoint costs
// one TCP connection. It follows the LoadBalancer: a removed endpoint's
// connection is closed.
type ConnPool struct {
	dialOpts []grpc.DialOption
	log      *slog.Logger
	cancel   func()

	// Connections of removed endpoints drain: they close once their calls
	// in flight end, or after DrainTimeout, or when the pool closes.
	stopDrains context.CancelFunc
	drainCtx   context.Context
	drains     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	conns  atomic.Pointer[map[*lb.Endpoint]*grpc.ClientConn] // copy on write
}

// NewConnPool returns a pool for balancer's endpoints, dialling with the
// settings of cfg (nil means policy.DefaultClient()) and then extra.
func NewConnPool(balancer *lb.LoadBalancer, cfg *policy.Client, logger *slog.Logger, extra ...grpc.DialOption) (*ConnPool, error) {
	if cfg == nil {
		d := policy.DefaultClient()
		cfg = &d
	}
	opts, err := DialOptions(cfg)
	if err != nil {
		return nil, err
	}
	p := &ConnPool{dialOpts: append(opts, extra...), log: loggerOrDiscard(logger)}
	p.drainCtx, p.stopDrains = context.WithCancel(context.Background())
	empty := map[*lb.Endpoint]*grpc.ClientConn{}
	p.conns.Store(&empty)
	p.cancel = balancer.Subscribe(p.retain)
	return p, nil
}

// DialOptions turns a `client` block into grpc-go dial options:
// credentials, connect timeout and backoff, keepalive, message sizes and
// user agent.
func DialOptions(cfg *policy.Client) ([]grpc.DialOption, error) {
	creds := insecure.NewCredentials()
	if cfg.TLS != nil {
		tc, err := cfg.TLS.Load()
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(tc)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithUserAgent(cfg.UserAgent),
		// Message limits go in the default service config rather than in
		// default call options, which grpc-go merges into a new slice on
		// every call.
		grpc.WithDefaultServiceConfig(fmt.Sprintf(
			`{"methodConfig":[{"name":[{}],"maxRequestMessageBytes":%d,"maxResponseMessageBytes":%d}]}`,
			cfg.MaxSendSize, cfg.MaxReceiveSize)),
	}
	if cfg.ConnectionTimeout > 0 {
		opts = append(opts, grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.DefaultConfig,
			MinConnectTimeout: cfg.ConnectionTimeout,
		}))
	}
	if cfg.KeepAliveInterval > 0 {
		// Pings only while calls are in flight: servers reject idle pings
		// more often than every five minutes by default.
		opts = append(opts, grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:    cfg.KeepAliveInterval,
			Timeout: cfg.KeepAliveTimeout,
		}))
	}
	return opts, nil
}

// Get returns the connection to e, dialling it on first use. The common
// path is an atomic load and a map lookup.
func (p *ConnPool) Get(e *lb.Endpoint) (*grpc.ClientConn, error) {
	if cc, ok := (*p.conns.Load())[e]; ok {
		return cc, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, fmt.Errorf("connection pool: %w", ErrClosed)
	}
	old := *p.conns.Load()
	if cc, ok := old[e]; ok {
		return cc, nil
	}
	if e.Removed() {
		return nil, fmt.Errorf("%w %q: it was removed", lb.ErrUnknownServer, e.ID)
	}
	cc, err := grpc.NewClient("passthrough:///"+e.Address, p.dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s (%s): %w", e.ID, e.Address, err)
	}
	cc.Connect()
	next := make(map[*lb.Endpoint]*grpc.ClientConn, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[e] = cc
	p.conns.Store(&next)
	p.log.Debug("connection opened", "server", e.ID, "address", e.Address)
	return cc, nil
}

// Len returns how many connections are open.
func (p *ConnPool) Len() int { return len(*p.conns.Load()) }

// retain closes the connections of endpoints that left the balancer.
func (p *ConnPool) retain(all []*lb.Endpoint) {
	p.mu.Lock()
	defer p.mu.Unlock()
	keep := make(map[*lb.Endpoint]bool, len(all))
	for _, e := range all {
		keep[e] = true
	}
	old := *p.conns.Load()
	next := make(map[*lb.Endpoint]*grpc.ClientConn, len(old))
	for e, cc := range old {
		if keep[e] {
			next[e] = cc
		} else {
			p.drains.Add(1)
			go p.drain(e, cc)
		}
	}
	p.conns.Store(&next)
}

// DrainTimeout bounds how long a removed endpoint's connection stays open
// for the calls still in flight on it.
const DrainTimeout = 30 * time.Second

// drain closes a removed endpoint's connection once its calls in flight
// have ended, so that removing an endpoint never cuts a call short.
func (p *ConnPool) drain(e *lb.Endpoint, cc *grpc.ClientConn) {
	defer p.drains.Done()
	deadline := time.Now().Add(DrainTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for e.InFlight() > 0 && time.Now().Before(deadline) {
		select {
		case <-tick.C:
		case <-p.drainCtx.Done():
			deadline = time.Now()
		}
	}
	_ = cc.Close()
	p.log.Debug("connection closed: server removed", "server", e.ID)
}

// Close closes every connection; Get fails afterwards.
func (p *ConnPool) Close() error {
	p.cancel()
	p.stopDrains()
	p.drains.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	for _, cc := range *p.conns.Load() {
		if err := cc.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	empty := map[*lb.Endpoint]*grpc.ClientConn{}
	p.conns.Store(&empty)
	return errors.Join(errs...)
}
