// Package service wires one configured service into running parts: its
// LoadBalancer, the connections to its endpoints, the HealthChecker that
// watches them and the LoadBalancedClient that sends calls. The CLI runs on
// it; Go programs that load pvlb's HCL can too.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"

	"github.com/peervault/pvlb/pkg/config"
	"github.com/peervault/pvlb/pkg/discovery"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/rpc"
	"github.com/peervault/pvlb/pkg/telemetry"
)

// Service is a configured service, running. Its parts stay the same
// through Reload, which changes them in place.
type Service struct {
	Name     string
	Balancer *lb.LoadBalancer
	Pool     *rpc.ConnPool
	Health   *rpc.HealthChecker // nil unless Options.HealthChecks
	Client   *rpc.LoadBalancedClient
	// metrics are recorded when Options.Meter is set.
	metrics *telemetry.Metrics
	opts    Options
	log     *slog.Logger

	mu  sync.Mutex // serialises Reload and Close
	cfg *config.Service
	// following is source, for picks that find nothing healthy to ask it
	// to resolve again without waiting for the lock.
	following atomic.Pointer[discovery.Source]
	// source follows the discovery plugin; nil for a static list.
	// retired counts what the sources it replaced did, by kind, so that
	// the metrics' counts never go back.
	source  *discovery.Source
	retired map[string]discovery.Stats
}

// Options adjusts New.
type Options struct {
	Logger *slog.Logger
	// HealthChecks starts the service's health checker.
	HealthChecks bool
	// OneShot makes the health checker check only when forced, and lets a
	// single result decide, for tools that check once and report.
	OneShot bool
	// DialOptions are added to those the configuration implies.
	DialOptions []grpc.DialOption
	// Host runs the service's discovery plugin. A static list, built in,
	// needs none.
	Host *discovery.Host
	// Config is the configuration svc belongs to, for plugin checksums.
	Config *config.Config
	// Meter, when set, records the service's metrics (pkg/telemetry).
	Meter metric.MeterProvider
}

// ErrNeedsHost is returned for a plugin discovery kind without Options.Host.
var ErrNeedsHost = errors.New("needs a discovery plugin host")

// New builds and starts svc; ctx bounds the start (a discovery plugin's
// launch and first answer), not the service's life. Close stops
// everything it started.
func New(ctx context.Context, svc *config.Service, opts Options) (_ *Service, err error) {
	if svc.Discovery == nil {
		return nil, fmt.Errorf("service %q has no discovery", svc.Name)
	}
	if opts.Host == nil && svc.Discovery.Kind != config.StaticKind {
		return nil, fmt.Errorf("service %q uses %s discovery, which %w", svc.Name, svc.Discovery.Kind, ErrNeedsHost)
	}
	if opts.Config == nil {
		opts.Config = &config.Config{}
	}
	s := &Service{Name: svc.Name, cfg: svc, opts: opts, log: opts.Logger, retired: map[string]discovery.Stats{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	// A pick that finds nothing healthy asks discovery to look again.
	resolveNow := lb.WhenNoneHealthy(func() {
		if src := s.following.Load(); src != nil {
			src.ResolveNow()
		}
	})
	if s.Balancer, err = lb.New(svc.BalancerConfig(), opts.Logger, resolveNow); err != nil {
		return nil, fmt.Errorf("service %q: %w", svc.Name, err)
	}
	if s.source, err = s.follow(ctx, svc.Discovery, opts); err != nil {
		return nil, err
	}
	s.following.Store(s.source)
	clientCfg := clientConfig(svc)
	if s.Pool, err = rpc.NewConnPool(s.Balancer, &svc.Client, opts.Logger, opts.DialOptions...); err != nil {
		return nil, fmt.Errorf("service %q: %w", svc.Name, err)
	}
	if opts.HealthChecks {
		var hopts []rpc.HealthOption
		if opts.OneShot {
			hopts = append(hopts, rpc.WithThresholds(1, 1), rpc.WithManualChecks())
		}
		s.Health = rpc.NewHealthCheckerFromPolicy(svc.Health.HealthCheck, opts.Logger, hopts...)
		if err := s.Health.Start(s.Balancer, s.Pool); err != nil {
			return nil, fmt.Errorf("service %q: %w", svc.Name, err)
		}
	}
	clientOpts := []rpc.ClientOption{rpc.WithConnPool(s.Pool)}
	if opts.Meter != nil {
		if s.metrics, err = telemetry.New(opts.Meter, s.Balancer); err != nil {
			return nil, fmt.Errorf("service %q: metrics: %w", svc.Name, err)
		}
		clientOpts = append(clientOpts, rpc.WithMetrics(s.metrics))
		s.observeDiscovery(svc.Discovery.Kind)
	}
	if s.Client, err = rpc.NewLoadBalancedClient(s.Balancer, clientCfg, opts.Logger, clientOpts...); err != nil {
		return nil, fmt.Errorf("service %q: %w", svc.Name, err)
	}
	return s, nil
}

func clientConfig(svc *config.Service) *rpc.LoadBalancedClientConfig {
	return &rpc.LoadBalancedClientConfig{Retry: svc.Retry, Client: svc.Client, Hedging: svc.Hedging}
}

// follow loads d's endpoints into the balancer: a static list at once, a
// plugin's through a Source that keeps following it (nil for a static
// list).
func (s *Service) follow(ctx context.Context, d *config.Discovery, opts Options) (*discovery.Source, error) {
	if d.Kind == config.StaticKind {
		if err := s.Balancer.Sync(d.Specs()); err != nil {
			return nil, fmt.Errorf("service %q: %w", s.Name, err)
		}
		return nil, nil
	}
	settings, diags := opts.Host.Settings(ctx, opts.Config, d)
	if diags.HasErrors() {
		return nil, fmt.Errorf("service %q: %s", s.Name, diags.Error())
	}
	src, err := opts.Host.Follow(ctx, d.Kind, discovery.Pin(opts.Config, d.Kind), settings, s.Name, s.Balancer)
	if err != nil {
		return nil, fmt.Errorf("service %q: %w", s.Name, err)
	}
	return src, nil
}

// observeDiscovery counts the discovery plugin's updates and restarts in
// the metrics, with those of the sources of its kind it replaced.
func (s *Service) observeDiscovery(kind string) {
	src := s.source
	if s.metrics == nil || src == nil {
		return
	}
	before := s.retired[kind]
	s.metrics.ObserveDiscovery(kind, func() (int, int) {
		st := src.Stats()
		return before.Updates + st.Updates, before.Restarts + st.Restarts
	})
}

// Reload makes the running service follow svc, a new configuration of the
// same service, changing in place what differs: the balancer's strategy,
// sessions, outcomes, limits and outlier detection; the health checks;
// retries and hedging; the connection settings (open connections drain
// and the next calls dial anew); the discovery source. A new discovery
// source starts, and takes over the endpoints, before the old one stops;
// endpoints that stay keep their connections, health and statistics, and
// calls in flight finish where they are. svc should come from a
// configuration that loaded without errors; opts.Config and opts.Host, when
// set, replace those New was given; the other Options (logger, health
// checks, dial options, meter) are New's to set, and Reload refuses them.
// On an error nothing has changed.
func (s *Service) Reload(ctx context.Context, svc *config.Service, opts Options) error {
	if svc.Name != s.Name {
		return fmt.Errorf("service %q cannot be reloaded as %q", s.Name, svc.Name)
	}
	if svc.Discovery == nil {
		return fmt.Errorf("service %q has no discovery", svc.Name)
	}
	if opts.Logger != nil || opts.HealthChecks || opts.OneShot || len(opts.DialOptions) > 0 || opts.Meter != nil {
		return fmt.Errorf("service %q: Reload takes Options.Config and Options.Host only; the logger, health checks, dial options and meter are set by New", svc.Name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if opts.Config == nil {
		opts.Config = s.opts.Config
	}
	if opts.Host == nil {
		opts.Host = s.opts.Host
	}
	if opts.Host == nil && svc.Discovery.Kind != config.StaticKind {
		return fmt.Errorf("service %q uses %s discovery, which %w", svc.Name, svc.Discovery.Kind, ErrNeedsHost)
	}
	// Whatever can fail is checked before anything changes.
	balancerCfg := svc.BalancerConfig()
	if err := balancerCfg.Validate(); err != nil {
		return fmt.Errorf("service %q: %w", svc.Name, err)
	}
	if err := svc.Hedging.Validate(); err != nil {
		return fmt.Errorf("service %q: %w", svc.Name, err)
	}
	if _, err := svc.Retry.Limiter(time.Now()); err != nil {
		return fmt.Errorf("service %q: %w", svc.Name, err)
	}
	if _, err := rpc.DialOptions(&svc.Client); err != nil {
		return fmt.Errorf("service %q: %w", svc.Name, err)
	}
	if s.Health != nil && (svc.Health.Interval <= 0 || svc.Health.Timeout <= 0) {
		return fmt.Errorf("service %q: health checks need a positive interval and timeout", svc.Name)
	}
	oldSource, err := s.swapDiscovery(ctx, svc, opts)
	if err != nil {
		return err
	}
	s.cfg, s.opts.Config, s.opts.Host = svc, opts.Config, opts.Host
	var errs []error
	if err := s.Balancer.Reconfigure(balancerCfg); err != nil {
		errs = append(errs, err)
	}
	if err := s.Pool.Reconfigure(&svc.Client); err != nil {
		errs = append(errs, err)
	}
	if s.Health != nil {
		if err := s.Health.Reconfigure(svc.Health.HealthCheck, s.Pool); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.Client.Reconfigure(clientConfig(svc)); err != nil {
		errs = append(errs, err)
	}
	if oldSource != nil {
		oldSource.Close()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("service %q: reloaded in part: %w", svc.Name, err)
	}
	return nil
}

// swapDiscovery starts svc's discovery source when it differs from the
// one running, and hands it the balancer; it returns the source replaced,
// for the caller to close once the rest has changed. On an error the old
// source goes on as before.
func (s *Service) swapDiscovery(ctx context.Context, svc *config.Service, opts Options) (*discovery.Source, error) {
	d := svc.Discovery
	old := s.source
	switch {
	case d.Kind == config.StaticKind && old == nil:
		if err := s.Balancer.Sync(d.Specs()); err != nil {
			return nil, fmt.Errorf("service %q: %w", s.Name, err)
		}
		return nil, nil
	case d.Kind != config.StaticKind && old != nil:
		settings, diags := opts.Host.Settings(ctx, opts.Config, d)
		if diags.HasErrors() {
			return nil, fmt.Errorf("service %q: %s", s.Name, diags.Error())
		}
		if old.Same(d.Kind, discovery.Pin(opts.Config, d.Kind), settings) {
			return nil, nil
		}
	}
	if old != nil {
		old.Hold()
	}
	src, err := s.follow(ctx, d, opts)
	if err != nil {
		if old != nil {
			old.Resume()
		}
		return nil, err
	}
	if old != nil {
		st := old.Stats()
		r := s.retired[s.cfg.Discovery.Kind]
		s.retired[s.cfg.Discovery.Kind] = discovery.Stats{Updates: r.Updates + st.Updates, Restarts: r.Restarts + st.Restarts}
	}
	s.source = src
	s.following.Store(src)
	s.observeDiscovery(d.Kind)
	s.log.Info("discovery changed", "service", s.Name, "from", s.cfg.Discovery.Kind, "to", d.Kind)
	return old, nil
}

// Close stops the health checker and the discovery plugin, and closes every
// connection.
func (s *Service) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.metrics != nil {
		_ = s.metrics.Close()
	}
	s.following.Store(nil)
	if s.source != nil {
		s.source.Close()
	}
	if s.Client != nil {
		_ = s.Client.Close()
	}
	if s.Health != nil {
		s.Health.Close()
	}
	if s.Pool != nil {
		_ = s.Pool.Close()
	}
}
