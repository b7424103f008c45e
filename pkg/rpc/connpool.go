package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
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
	cfg      policy.Client
	extra    []grpc.DialOption
	dialOpts []grpc.DialOption // guarded by mu
	log      *slog.Logger
	cancel   func()

	// Connections of removed endpoints drain: they close once their calls
	// in flight end, or after DrainTimeout, or when the pool closes.
	stopDrains context.CancelFunc
	drainCtx   context.Context
	drains     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	conns  atomic.Pointer[map[*lb.Endpoint]*pooledConn] // copy on write
	// removed holds the draining connections of removed endpoints, for
	// the calls picked just before the removal; guarded by mu.
	removed map[*lb.Endpoint]*pooledConn
}

// pooledConn is a connection and the calls holding it (hold). A drain
// closes it only once it swaps inUse from 0 to closing, so a hold either
// sees a count above zero and keeps it open, or sees it closing and dials
// anew.
type pooledConn struct {
	cc    *grpc.ClientConn
	inUse atomic.Int64
}

const closing = -1 << 40

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
	p := &ConnPool{cfg: *cfg, extra: extra, dialOpts: append(opts, extra...), log: loggerOrDiscard(logger)}
	p.drainCtx, p.stopDrains = context.WithCancel(context.Background())
	empty := map[*lb.Endpoint]*pooledConn{}
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
	pc, err := p.conn(e)
	if err != nil {
		return nil, err
	}
	return pc.cc, nil
}

// hold is Get for a call: the connection is not closed by a drain
// (Reconfigure, the endpoint's removal) until the call lets it go with
// release.
func (p *ConnPool) hold(e *lb.Endpoint) (*pooledConn, error) {
	for range 3 {
		pc, err := p.conn(e)
		if err != nil {
			return nil, err
		}
		if pc.inUse.Add(1) > 0 {
			return pc, nil
		}
		pc.inUse.Add(-1) // closed by a drain after this hold found it
	}
	return nil, fmt.Errorf("connect to %s (%s): its connection closed three times over", e.ID, e.Address)
}

// release ends a hold; nil is ignored.
func (pc *pooledConn) release() {
	if pc != nil {
		pc.inUse.Add(-1)
	}
}

func (p *ConnPool) conn(e *lb.Endpoint) (*pooledConn, error) {
	if pc, ok := (*p.conns.Load())[e]; ok {
		return pc, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, fmt.Errorf("connection pool: %w", ErrClosed)
	}
	old := *p.conns.Load()
	if pc, ok := old[e]; ok {
		return pc, nil
	}
	if e.Removed() {
		if pc, ok := p.removed[e]; ok {
			return pc, nil
		}
		return nil, fmt.Errorf("%w %q: it was removed", lb.ErrUnknownServer, e.ID)
	}
	cc, err := grpc.NewClient("passthrough:///"+e.Address, p.dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s (%s): %w", e.ID, e.Address, err)
	}
	cc.Connect()
	next := make(map[*lb.Endpoint]*pooledConn, len(old)+1)
	maps.Copy(next, old)
	pc := &pooledConn{cc: cc}
	next[e] = pc
	p.conns.Store(&next)
	p.log.Debug("connection opened", "server", e.ID, "address", e.Address)
	return pc, nil
}

// Len returns how many connections are open.
func (p *ConnPool) Len() int { return len(*p.conns.Load()) }

// Reconfigure makes later connections follow cfg. When cfg changes how
// connections are made (credentials, timeouts, keepalive, message sizes,
// user agent), every open connection drains, closing once the calls
// holding it end, and the next call to each endpoint dials anew; the
// files of a tls block are read again. An unchanged cfg changes nothing.
// A cfg that cannot be used (a certificate that does not load) changes
// nothing and is returned as an error.
func (p *ConnPool) Reconfigure(cfg *policy.Client) error {
	p.mu.Lock()
	same := reflect.DeepEqual(p.cfg, *cfg)
	p.mu.Unlock()
	if same {
		return nil
	}
	opts, err := DialOptions(cfg)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("connection pool: %w", ErrClosed)
	}
	p.cfg, p.dialOpts = *cfg, append(opts, p.extra...)
	for e, pc := range *p.conns.Load() {
		p.drains.Add(1)
		go p.drain(e, pc, "connection settings changed")
	}
	empty := map[*lb.Endpoint]*pooledConn{}
	p.conns.Store(&empty)
	return nil
}

// retain closes the connections of endpoints that left the balancer.
func (p *ConnPool) retain(all []*lb.Endpoint) {
	p.mu.Lock()
	defer p.mu.Unlock()
	keep := make(map[*lb.Endpoint]bool, len(all))
	for _, e := range all {
		keep[e] = true
	}
	old := *p.conns.Load()
	next := make(map[*lb.Endpoint]*pooledConn, len(old))
	for e, pc := range old {
		if keep[e] {
			next[e] = pc
		} else {
			if p.removed == nil {
				p.removed = map[*lb.Endpoint]*pooledConn{}
			}
			p.removed[e] = pc
			p.drains.Add(1)
			go p.drain(e, pc, "server removed")
		}
	}
	p.conns.Store(&next)
}

// DrainTimeout bounds how long a removed endpoint's connection stays open
// for the calls still in flight on it.
const DrainTimeout = 30 * time.Second

// drain closes a connection taken out of the pool once no call holds it,
// so that neither removing an endpoint nor changing connection settings
// cuts a call short.
func (p *ConnPool) drain(e *lb.Endpoint, pc *pooledConn, why string) {
	defer p.drains.Done()
	deadline := time.Now().Add(DrainTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !pc.inUse.CompareAndSwap(0, closing) && time.Now().Before(deadline) {
		select {
		case <-tick.C:
		case <-p.drainCtx.Done():
			deadline = time.Now()
		}
	}
	p.mu.Lock()
	if p.removed[e] == pc {
		delete(p.removed, e)
	}
	p.mu.Unlock()
	_ = pc.cc.Close()
	p.log.Debug("connection closed: "+why, "server", e.ID)
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
	for _, pc := range *p.conns.Load() {
		if err := pc.cc.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	empty := map[*lb.Endpoint]*pooledConn{}
	p.conns.Store(&empty)
	return errors.Join(errs...)
}
