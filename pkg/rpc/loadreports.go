package rpc

import (
	"context"
	"log/slog"
	"sync"
	"time"

	orcaservice "github.com/cncf/xds/go/xds/service/orca/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/orcaload"
)

// loadStreams keeps one ORCA out-of-band stream of load reports open to
// each endpoint of a balancer whose strategy asks for them
// (weighted_round_robin's enable_oob_load_report), on the pool's
// connections, and hands every report to the balancer: what grpc-go's
// orca.RegisterOOBListener does for a channel's subchannels.
type loadStreams struct {
	balancer *lb.LoadBalancer
	pool     *ConnPool
	period   time.Duration
	log      *slog.Logger
	cancel   func() // ends the membership subscription

	mu      sync.Mutex
	closed  bool
	streams map[*lb.Endpoint]context.CancelFunc
	wg      sync.WaitGroup
}

// Backoff between attempts to open an endpoint's stream.
const (
	loadStreamMinBackoff = time.Second
	loadStreamMaxBackoff = 30 * time.Second
)

func newLoadStreams(balancer *lb.LoadBalancer, pool *ConnPool, period time.Duration, log *slog.Logger) *loadStreams {
	s := &loadStreams{balancer: balancer, pool: pool, period: period, log: log, streams: map[*lb.Endpoint]context.CancelFunc{}}
	s.cancel = balancer.Subscribe(s.follow)
	return s
}

// follow starts a stream for each new endpoint and ends those of the
// endpoints that left; it runs under the balancer's lock, so it only
// starts and cancels goroutines.
func (s *loadStreams) follow(all []*lb.Endpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	present := make(map[*lb.Endpoint]bool, len(all))
	for _, e := range all {
		present[e] = true
		if _, ok := s.streams[e]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		s.streams[e] = cancel
		s.wg.Add(1)
		go s.run(ctx, e)
	}
	for e, cancel := range s.streams {
		if !present[e] {
			cancel()
			delete(s.streams, e)
		}
	}
}

// run keeps e's stream open until ctx ends, reopening it after a backoff
// when it fails.
func (s *loadStreams) run(ctx context.Context, e *lb.Endpoint) {
	defer s.wg.Done()
	backoff := loadStreamMinBackoff
	for ctx.Err() == nil {
		if s.stream(ctx, e) {
			backoff = loadStreamMinBackoff
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		backoff = min(2*backoff, loadStreamMaxBackoff)
	}
}

// stream reads one stream of e's reports until it fails; it reports
// whether any report came.
func (s *loadStreams) stream(ctx context.Context, e *lb.Endpoint) (reported bool) {
	cc, err := s.pool.Get(e)
	if err != nil {
		return false
	}
	st, err := orcaservice.NewOpenRcaServiceClient(cc).StreamCoreMetrics(ctx,
		&orcaservice.OrcaLoadReportRequest{ReportInterval: durationpb.New(s.period)})
	if err != nil {
		return false
	}
	for {
		r, err := st.Recv()
		if err != nil {
			if ctx.Err() == nil {
				s.log.Debug("load report stream ended", "server", e.ID, "error", err)
			}
			return reported
		}
		reported = true
		s.balancer.ReportLoad(e, orcaload.FromProto(r))
	}
}

// Close ends every stream and waits for them.
func (s *loadStreams) Close() {
	s.cancel()
	s.mu.Lock()
	s.closed = true
	for e, cancel := range s.streams {
		cancel()
		delete(s.streams, e)
	}
	s.mu.Unlock()
	s.wg.Wait()
}
