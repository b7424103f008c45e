package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/policy"
)

// HealthChecker checks a LoadBalancer's endpoints with grpc.health.v1 every
// interval and feeds the results to the LoadBalancer at once: an endpoint
// turns unhealthy after UnhealthyThreshold consecutive failures, healthy
// again after HealthyThreshold passes, and unhealthy at once when its
// connection enters TRANSIENT_FAILURE.
type HealthChecker struct {
	interval, timeout time.Duration
	thresholds        lb.HealthThresholds
	service           string
	manual            bool
	log               *slog.Logger

	mu       sync.Mutex
	balancer *lb.LoadBalancer
	pool     *ConnPool
	targets  map[*lb.Endpoint]*healthTarget
	cancel   func() // unsubscribes from the balancer
	ctx      context.Context
	stop     context.CancelFunc
	wg       sync.WaitGroup
}

type healthTarget struct {
	endpoint *lb.Endpoint
	stop     context.CancelFunc
	checkMu  sync.Mutex // one check at a time per endpoint, forced or not

	mu          sync.Mutex // guards the fields below
	run         lb.HealthRun
	lastChecked time.Time
	latency     time.Duration
	lastErr     error
}

// HealthOption adjusts a HealthChecker.
type HealthOption func(*HealthChecker)

// WithThresholds sets the consecutive failures that take an endpoint out and
// the passes that bring it back (defaults 3 and 2).
func WithThresholds(unhealthy, healthy int) HealthOption {
	return func(h *HealthChecker) { h.thresholds = lb.HealthThresholds{Unhealthy: unhealthy, Healthy: healthy} }
}

// WithHealthService sets the service name sent in each check; empty (the
// default) asks for the server's overall health.
func WithHealthService(name string) HealthOption {
	return func(h *HealthChecker) { h.service = name }
}

// WithManualChecks runs no periodic checks: endpoints are checked only by
// ForceHealthCheck and ForceHealthCheckAll (connection failures still count
// at once). One-shot tools use it to check exactly once.
func WithManualChecks() HealthOption {
	return func(h *HealthChecker) { h.manual = true }
}

// NewHealthChecker returns a checker; Start attaches it to a LoadBalancer.
func NewHealthChecker(interval, timeout time.Duration, logger *slog.Logger, opts ...HealthOption) *HealthChecker {
	h := &HealthChecker{
		interval:   interval,
		timeout:    timeout,
		thresholds: policy.DefaultHealthCheck().Thresholds(),
		log:        loggerOrDiscard(logger),
		targets:    map[*lb.Endpoint]*healthTarget{},
	}
	for _, opt := range opts {
		opt(h)
	}
	return h
}

// NewHealthCheckerFromPolicy returns a checker that checks as a
// `health_policy` block says; opts come after, so they may override it.
func NewHealthCheckerFromPolicy(p policy.HealthCheck, logger *slog.Logger, opts ...HealthOption) *HealthChecker {
	base := []HealthOption{WithThresholds(p.UnhealthyThreshold, p.HealthyThreshold), WithHealthService(p.Service)}
	return NewHealthChecker(p.Interval, p.Timeout, logger, append(base, opts...)...)
}

// Start checks balancer's endpoints, present and future, over pool's
// connections, until Close.
func (h *HealthChecker) Start(balancer *lb.LoadBalancer, pool *ConnPool) error {
	if h.interval <= 0 || h.timeout <= 0 {
		return fmt.Errorf("health checker: interval (%s) and timeout (%s) must be positive", h.interval, h.timeout)
	}
	h.mu.Lock()
	if h.balancer != nil {
		h.mu.Unlock()
		return errors.New("health checker: already started")
	}
	h.balancer, h.pool = balancer, pool
	h.ctx, h.stop = context.WithCancel(context.Background())
	h.mu.Unlock()
	h.cancel = balancer.Subscribe(h.follow)
	return nil
}

// Reconfigure makes the checker follow p (interval, timeout, thresholds,
// the health service named) over pool's connections, pool being the one
// it runs on or one that replaces it. Checks in progress are stopped and
// every endpoint is checked again at once; endpoints keep their health
// until the new checks decide otherwise. A checker not yet started only
// takes the settings.
func (h *HealthChecker) Reconfigure(p policy.HealthCheck, pool *ConnPool) error {
	if p.Interval <= 0 || p.Timeout <= 0 {
		return fmt.Errorf("health checker: interval (%s) and timeout (%s) must be positive", p.Interval, p.Timeout)
	}
	h.mu.Lock()
	balancer := h.balancer
	if balancer == nil {
		h.applyPolicy(p)
		h.mu.Unlock()
		return nil
	}
	h.mu.Unlock()
	// Unsubscribed first, so that no membership change lands between
	// stopping the old checks and following anew.
	h.cancel()
	h.mu.Lock()
	h.stop()
	h.mu.Unlock()
	h.wg.Wait()
	h.mu.Lock()
	h.applyPolicy(p)
	h.pool = pool
	h.targets = map[*lb.Endpoint]*healthTarget{}
	h.ctx, h.stop = context.WithCancel(context.Background())
	h.mu.Unlock()
	h.cancel = balancer.Subscribe(h.follow)
	h.log.Info("health checks reconfigured", "service", balancer.Service(), "interval", p.Interval, "timeout", p.Timeout, "unhealthy_threshold", p.UnhealthyThreshold, "healthy_threshold", p.HealthyThreshold)
	return nil
}

// applyPolicy takes p's settings; the caller holds h.mu.
func (h *HealthChecker) applyPolicy(p policy.HealthCheck) {
	h.interval, h.timeout, h.service = p.Interval, p.Timeout, p.Service
	if !h.manual {
		// One-shot checkers keep their single-result thresholds.
		WithThresholds(p.UnhealthyThreshold, p.HealthyThreshold)(h)
	}
}

// follow starts checking new endpoints and stops checking removed ones.
// It runs under the balancer's lock (see Subscribe).
func (h *HealthChecker) follow(all []*lb.Endpoint) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ctx.Err() != nil {
		return
	}
	present := make(map[*lb.Endpoint]bool, len(all))
	for _, e := range all {
		present[e] = true
		if _, ok := h.targets[e]; ok {
			continue
		}
		ctx, stop := context.WithCancel(h.ctx)
		t := &healthTarget{endpoint: e, stop: stop}
		h.targets[e] = t
		h.wg.Add(1)
		go h.watchConnection(ctx, t)
		if !h.manual {
			h.wg.Add(1)
			go h.checkLoop(ctx, t)
		}
	}
	for e, t := range h.targets {
		if !present[e] {
			t.stop()
			delete(h.targets, e)
		}
	}
}

// healthSettings are what the checks read; Reconfigure changes them.
type healthSettings struct {
	interval, timeout time.Duration
	thresholds        lb.HealthThresholds
	service           string
	pool              *ConnPool
}

func (h *HealthChecker) settings() healthSettings {
	h.mu.Lock()
	defer h.mu.Unlock()
	return healthSettings{h.interval, h.timeout, h.thresholds, h.service, h.pool}
}

// checkLoop checks at once, then every interval.
func (h *HealthChecker) checkLoop(ctx context.Context, t *healthTarget) {
	defer h.wg.Done()
	ticker := time.NewTicker(h.settings().interval)
	defer ticker.Stop()
	for {
		h.check(ctx, t)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// watchConnection marks the endpoint unhealthy the moment its connection
// fails, and reconnects an idle connection so that failure shows at once.
func (h *HealthChecker) watchConnection(ctx context.Context, t *healthTarget) {
	defer h.wg.Done()
	cc, err := h.settings().pool.Get(t.endpoint)
	if err != nil {
		return
	}
	for {
		state := cc.GetState()
		switch state {
		case connectivity.TransientFailure:
			h.apply(t, false, 0, fmt.Errorf("connection failed (TRANSIENT_FAILURE)"), true)
		case connectivity.Idle:
			cc.Connect()
		}
		if !cc.WaitForStateChange(ctx, state) {
			return
		}
	}
}

// check runs one grpc.health.v1 check and applies its result.
func (h *HealthChecker) check(ctx context.Context, t *healthTarget) {
	t.checkMu.Lock()
	defer t.checkMu.Unlock()
	if ctx.Err() != nil {
		return
	}
	pass, latency, err := h.probe(ctx, t.endpoint)
	if ctx.Err() != nil {
		return // stopping: a cancelled check says nothing about the server
	}
	h.apply(t, pass, latency, err, false)
}

func (h *HealthChecker) probe(ctx context.Context, e *lb.Endpoint) (bool, time.Duration, error) {
	set := h.settings()
	cc, err := set.pool.Get(e)
	if err != nil {
		return false, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, set.timeout)
	defer cancel()
	start := time.Now()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: set.service}, grpc.WaitForReady(false))
	latency := time.Since(start)
	switch {
	case status.Code(err) == codes.Unimplemented:
		return false, latency, errors.New("the server does not implement grpc.health.v1")
	case status.Code(err) == codes.DeadlineExceeded:
		return false, latency, fmt.Errorf("no answer within %s", set.timeout)
	case err != nil:
		return false, latency, errors.New(plainMessage(err))
	case resp.GetStatus() != healthpb.HealthCheckResponse_SERVING:
		return false, latency, fmt.Errorf("status %s", resp.GetStatus())
	}
	return true, latency, nil
}

// apply feeds one result through the thresholds into the balancer. A
// connection failure is decisive at once.
func (h *HealthChecker) apply(t *healthTarget, pass bool, latency time.Duration, err error, connectionFailed bool) {
	thresholds := h.settings().thresholds
	t.mu.Lock()
	before := t.endpoint.ActiveHealth()
	var after lb.HealthStatus
	if connectionFailed {
		after = lb.HealthUnhealthy
		t.run = lb.HealthRun{}
		// A check's own error (the dial error, say) says more than the
		// connection state; keep it when there is one.
		if t.lastErr == nil {
			t.lastErr = err
		}
	} else {
		after = thresholds.Observe(&t.run, before, pass)
		t.lastChecked, t.latency, t.lastErr = time.Now(), latency, err
	}
	t.mu.Unlock()
	if !connectionFailed {
		h.balancer.Probed(t.endpoint, pass)
	}
	if after == before {
		return
	}
	if setErr := h.balancer.SetHealth(t.endpoint.ID, after); setErr != nil {
		return // removed meanwhile
	}
	if after == lb.HealthUnhealthy {
		h.log.Info("server unhealthy", "service", h.balancer.Service(), "server", t.endpoint.ID, "address", t.endpoint.Address, "error", err)
	} else {
		h.log.Info("server healthy", "service", h.balancer.Service(), "server", t.endpoint.ID, "address", t.endpoint.Address)
	}
}

// ForceHealthCheck checks one endpoint now and returns its resulting
// status; ctx ends the check early (as Close does), and a check ended so
// says nothing about the server.
func (h *HealthChecker) ForceHealthCheck(ctx context.Context, id string) (lb.HealthStatus, error) {
	h.mu.Lock()
	var target *healthTarget
	for e, t := range h.targets {
		if e.ID == id {
			target = t
		}
	}
	life := h.ctx
	h.mu.Unlock()
	if target == nil {
		return lb.HealthUnknown, fmt.Errorf("health check: %w %q", lb.ErrUnknownServer, id)
	}
	ctx, stop := withLife(ctx, life)
	defer stop()
	h.check(ctx, target)
	return target.endpoint.Health(), nil
}

// ForceHealthCheckAll checks every endpoint now, concurrently, and returns
// when all checks are done, or when ctx ends (or Close is called).
func (h *HealthChecker) ForceHealthCheckAll(ctx context.Context) {
	h.mu.Lock()
	targets := make([]*healthTarget, 0, len(h.targets))
	for _, t := range h.targets {
		targets = append(targets, t)
	}
	life := h.ctx
	h.mu.Unlock()
	ctx, stop := withLife(ctx, life)
	defer stop()
	var wg sync.WaitGroup
	for _, t := range targets {
		wg.Go(func() { h.check(ctx, t) })
	}
	wg.Wait()
}

// HealthStats is the checker's view; its JSON keys are those of the
// original design's GetHealthStats.
type HealthStats struct {
	TotalServers int `json:"total_servers"`
	lb.HealthCounts
	CheckInterval string         `json:"check_interval"`
	CheckTimeout  string         `json:"check_timeout"`
	Servers       []ServerHealth `json:"servers"`
}

// ServerHealth is one endpoint's part of HealthStats.
type ServerHealth struct {
	ID                   string          `json:"id"`
	Address              string          `json:"address"`
	Status               lb.HealthStatus `json:"status"`
	LastChecked          time.Time       `json:"last_checked,omitzero"`
	LatencyMS            float64         `json:"latency_ms"`
	Error                string          `json:"error,omitempty"`
	ConsecutiveFailures  int             `json:"consecutive_failures"`
	ConsecutiveSuccesses int             `json:"consecutive_successes"`
}

// GetHealthStats returns every endpoint's health, sorted by id.
func (h *HealthChecker) GetHealthStats() HealthStats {
	h.mu.Lock()
	targets := make([]*healthTarget, 0, len(h.targets))
	for _, t := range h.targets {
		targets = append(targets, t)
	}
	interval, timeout := h.interval, h.timeout
	h.mu.Unlock()
	slices.SortFunc(targets, func(a, b *healthTarget) int { return strings.Compare(a.endpoint.ID, b.endpoint.ID) })
	st := HealthStats{
		TotalServers:  len(targets),
		CheckInterval: interval.String(),
		CheckTimeout:  timeout.String(),
		Servers:       make([]ServerHealth, 0, len(targets)),
	}
	for _, t := range targets {
		t.mu.Lock()
		sh := ServerHealth{
			ID:                   t.endpoint.ID,
			Address:              t.endpoint.Address,
			Status:               t.endpoint.Health(),
			LastChecked:          t.lastChecked,
			LatencyMS:            float64(t.latency.Microseconds()) / 1000,
			ConsecutiveFailures:  t.run.Failures,
			ConsecutiveSuccesses: t.run.Passes,
		}
		if t.lastErr != nil {
			sh.Error = t.lastErr.Error()
		}
		t.mu.Unlock()
		st.Count(sh.Status)
		st.Servers = append(st.Servers, sh)
	}
	return st
}

// Close stops every check and waits for the checking goroutines to end.
func (h *HealthChecker) Close() {
	h.mu.Lock()
	started := h.balancer != nil
	h.mu.Unlock()
	if !started {
		return
	}
	h.cancel()
	h.mu.Lock()
	h.stop()
	h.mu.Unlock()
	h.wg.Wait()
}

// plainMessage is a gRPC error's message without grpc-go's wrapping of
// transport errors, e.g. "dial tcp 127.0.0.1:50051: connect: connection
// refused" rather than `connection error: desc = "transport: Error while
// dialing: dial tcp ...`.
func plainMessage(err error) string {
	msg := status.Convert(err).Message()
	if rest, ok := strings.CutPrefix(msg, `connection error: desc = "`); ok {
		msg = strings.TrimSuffix(rest, `"`)
		msg = strings.TrimPrefix(msg, "transport: Error while dialing: ")
		msg = strings.TrimPrefix(msg, "transport: ")
	}
	return msg
}

// withLife returns ctx, ended also when life (the checker's) ends.
func withLife(ctx, life context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(life, cancel)
	return ctx, func() { stop(); cancel() }
}
