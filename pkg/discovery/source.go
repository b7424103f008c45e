package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peervault/pvlb/pkg/config"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/pluginapi"
)

// Source keeps one service's endpoints in a LoadBalancer in step with a
// discovery plugin. When the plugin crashes or its backend fails, the
// balancer keeps the last endpoints it had, and the Source starts the
// plugin again, with backoff, and carries on.
type Source struct {
	host     *Host
	kind     string
	pin      string
	settings pluginapi.Settings
	service  string
	balancer *lb.LoadBalancer
	log      *slog.Logger

	cancel context.CancelFunc
	done   chan struct{}
	// resolving is set while a ResolveNow runs; lastResolve (unix nanos)
	// spaces them out; resolves waits for them on Close.
	resolving   atomic.Bool
	lastResolve atomic.Int64
	resolveMu   sync.Mutex // orders a ResolveNow's start with Close
	closing     bool       // guarded by resolveMu
	resolves    sync.WaitGroup
	loopCtx     context.Context

	mu       sync.Mutex
	running  *Running
	updates  int
	restarts int
	lastErr  error
	// held keeps snapshots from the balancer while another Source takes
	// over (Hold); the latest waits in heldBack for Resume.
	held     bool
	heldBack []pluginapi.ServiceInstance
}

// Hold stops the Source from changing the balancer, while the plugin keeps
// running: a replacement starts meanwhile. Resume, if the replacement
// fails, applies the latest snapshot held back.
func (s *Source) Hold() {
	s.mu.Lock()
	s.held = true
	s.mu.Unlock()
}

// Resume undoes Hold.
func (s *Source) Resume() {
	s.mu.Lock()
	s.held = false
	back := s.heldBack
	s.heldBack = nil
	s.mu.Unlock()
	if back != nil {
		if err := s.apply(back); err != nil {
			s.fail(err)
		}
	}
}

// Same reports whether s follows the service with kind's plugin, pinned
// to pin, configured with settings: whether a configuration change leaves
// it as it is.
func (s *Source) Same(kind, pin string, settings pluginapi.Settings) bool {
	return s.kind == kind && s.pin == pin && s.settings.Equal(settings)
}

// Follow starts kind's plugin, configures it with settings, loads the
// service's instances into balancer, and keeps them up to date until Close.
// It fails if the plugin cannot start, rejects the settings, or cannot
// resolve the service the first time.
func (h *Host) Follow(ctx context.Context, kind, pin string, settings pluginapi.Settings, service string, balancer *lb.LoadBalancer) (*Source, error) {
	s := &Source{
		host: h, kind: kind, pin: pin, settings: settings, service: service, balancer: balancer,
		log: h.log.With("plugin", kind, "service", service), done: make(chan struct{}),
	}
	r, err := s.start(ctx)
	if err != nil {
		return nil, err
	}
	instances, err := r.Provider.Resolve(ctx, service)
	if err == nil {
		err = s.apply(instances)
	}
	if err != nil {
		r.Kill()
		return nil, fmt.Errorf("discovery %q: %w", kind, err)
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	s.cancel, s.loopCtx = cancel, loopCtx
	go s.loop(loopCtx)
	s.log.Debug("following the service's endpoints", "pid", r.Pid())
	return s, nil
}

// start launches and configures the plugin.
func (s *Source) start(ctx context.Context) (*Running, error) {
	r, err := s.host.Launch(ctx, s.kind, s.pin)
	if err != nil {
		return nil, fmt.Errorf("discovery %q: %w", s.kind, config.RedactError(err))
	}
	cctx, cancel := context.WithTimeout(ctx, s.host.ConfigureTimeout)
	defer cancel()
	if err := r.Provider.Configure(cctx, s.settings); err != nil {
		r.Kill()
		if errors.Is(cctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("discovery %q: the plugin did not finish Configure within %s", s.kind, s.host.ConfigureTimeout)
		}
		return nil, fmt.Errorf("discovery %q: %w", s.kind, config.RedactError(err))
	}
	s.mu.Lock()
	s.running = r
	s.mu.Unlock()
	return r, nil
}

// loop follows the plugin's Watch stream, restarting what fails.
func (s *Source) loop(ctx context.Context) {
	defer close(s.done)
	backoff := newBackoff()
	for ctx.Err() == nil {
		s.mu.Lock()
		r := s.running
		s.mu.Unlock()
		if r == nil || r.Exited() {
			if r != nil && !r.killed() {
				s.log.Warn("discovery plugin exited; keeping the last known endpoints and restarting it")
				r.Kill()
			}
			next, err := s.start(ctx)
			if err != nil {
				s.fail(err)
				if !backoff.wait(ctx) {
					return
				}
				continue
			}
			s.mu.Lock()
			s.restarts++
			s.mu.Unlock()
			r = next
		}
		err := s.watch(ctx, r, backoff)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errHung) {
			s.log.Warn("discovery plugin stopped answering; keeping the last known endpoints and restarting it", "pid", r.Pid())
			r.Kill()
			s.mu.Lock()
			s.running = nil
			s.mu.Unlock()
		}
		s.fail(err)
		if !backoff.wait(ctx) {
			return
		}
	}
}

// errHung is a plugin that did not answer a liveness check in time.
var errHung = errors.New("the plugin did not answer a liveness check in time")

// watch applies snapshots until the stream ends, or the plugin stops
// answering liveness checks.
func (s *Source) watch(ctx context.Context, r *Running, backoff *backoff) error {
	updates := make(chan []pluginapi.ServiceInstance)
	errc := make(chan error, 2)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { errc <- r.Provider.Watch(wctx, s.service, updates) }()
	tick := time.NewTicker(s.host.LivenessInterval)
	defer tick.Stop()
	checking := false
	alive := make(chan bool, 1)
	for {
		select {
		case <-tick.C:
			if checking {
				continue
			}
			checking = true
			go func() {
				cctx, cancel := context.WithTimeout(wctx, s.host.LivenessTimeout)
				defer cancel()
				_, err := r.Provider.SchemaErr(cctx)
				alive <- err == nil || wctx.Err() != nil
			}()
		case ok := <-alive:
			checking = false
			if !ok {
				return errHung
			}
		case instances := <-updates:
			if err := s.apply(instances); err != nil {
				s.fail(err) // a bad snapshot is skipped; the last good one stays
				continue
			}
			backoff.reset()
		case err := <-errc:
			if err == nil {
				err = errors.New("the watch ended")
			}
			return err
		}
	}
}

func (s *Source) fail(err error) {
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
	s.log.Warn("discovery failed; keeping the last known endpoints", "error", config.RedactError(err))
}

// apply turns a snapshot into the balancer's endpoints.
func (s *Source) apply(instances []pluginapi.ServiceInstance) error {
	// Under the lock, so that no snapshot lands after Hold returns.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held {
		s.heldBack = instances
		return nil
	}
	if err := s.balancer.Sync(Specs(instances)); err != nil {
		return fmt.Errorf("snapshot from the plugin: %w", err)
	}
	s.updates++
	return nil
}

// Stats describes a Source.
type Stats struct {
	Updates  int   // snapshots applied
	Restarts int   // times the plugin was started again
	LastErr  error // the latest failure, if any
}

// Stats returns what the Source has done.
func (s *Source) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Updates: s.updates, Restarts: s.restarts, LastErr: s.lastErr}
}

// Running returns the plugin process currently in use.
func (s *Source) Running() *Running {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running
}

// ResolveInterval spaces out ResolveNow's lookups.
const ResolveInterval = time.Second

// ResolveNow asks the plugin for the service's instances at once and
// applies them, as grpc-go asks its resolver when a channel has nothing
// to connect to: a DNS provider looks the name up without waiting for its
// TTL. It returns at once; the lookup runs in the background, at most one
// at a time and one per ResolveInterval.
func (s *Source) ResolveNow() {
	now := time.Now().UnixNano()
	if last := s.lastResolve.Load(); now-last < int64(ResolveInterval) || !s.lastResolve.CompareAndSwap(last, now) {
		return
	}
	if !s.resolving.CompareAndSwap(false, true) {
		return
	}
	s.resolveMu.Lock()
	defer s.resolveMu.Unlock()
	if s.closing {
		s.resolving.Store(false)
		return
	}
	s.resolves.Add(1)
	go func() {
		defer s.resolves.Done()
		defer s.resolving.Store(false)
		r := s.Running()
		if r == nil {
			return
		}
		ctx, cancel := context.WithTimeout(s.loopCtx, s.host.ConfigureTimeout)
		defer cancel()
		instances, err := r.Provider.Resolve(ctx, s.service)
		if err == nil {
			err = s.apply(instances)
		}
		if err != nil && s.loopCtx.Err() == nil {
			s.fail(fmt.Errorf("resolving on demand: %w", err))
			return
		}
		s.log.Debug("resolved on demand", "instances", len(instances))
	}()
}

// Close stops following and ends the plugin process.
func (s *Source) Close() {
	s.resolveMu.Lock()
	s.closing = true
	s.resolveMu.Unlock()
	s.cancel()
	s.resolves.Wait()
	<-s.done
	s.mu.Lock()
	r := s.running
	s.running = nil
	s.mu.Unlock()
	if r != nil {
		r.Kill()
	}
}

// backoff waits 100ms, doubling to 10s, between restarts.
type backoff struct{ next time.Duration }

func newBackoff() *backoff { return &backoff{next: 100 * time.Millisecond} }

func (b *backoff) reset() { b.next = 100 * time.Millisecond }

func (b *backoff) wait(ctx context.Context) bool {
	t := time.NewTimer(b.next)
	defer t.Stop()
	b.next = min(2*b.next, 10*time.Second)
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Specs turns a plugin's instances into the balancer's endpoints: an
// instance without a weight has weight 1.
func Specs(instances []pluginapi.ServiceInstance) []lb.EndpointSpec {
	specs := make([]lb.EndpointSpec, 0, len(instances))
	for _, in := range instances {
		w := in.Weight
		if w == 0 {
			w = 1
		}
		specs = append(specs, lb.EndpointSpec{
			ID: in.ID, Host: in.Address, Port: in.Port, Weight: w, Zone: in.Zone, Metadata: in.Metadata,
			Health: discoveryHealth(in.Health),
		})
	}
	return specs
}

func discoveryHealth(h pluginapi.Health) lb.HealthStatus {
	switch h {
	case pluginapi.HealthHealthy:
		return lb.HealthHealthy
	case pluginapi.HealthUnhealthy:
		return lb.HealthUnhealthy
	}
	return lb.HealthUnknown
}
