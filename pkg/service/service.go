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

	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"

	"github.com/peervault/pvlb/pkg/config"
	"github.com/peervault/pvlb/pkg/discovery"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/rpc"
	"github.com/peervault/pvlb/pkg/telemetry"
)

// Service is a configured service, running.
type Service struct {
	Name     string
	Balancer *lb.LoadBalancer
	Pool     *rpc.ConnPool
	Health   *rpc.HealthChecker // nil unless Options.HealthChecks
	Client   *rpc.LoadBalancedClient
	// Source follows the discovery plugin; nil for a static list.
	Source *discovery.Source
	// metrics are recorded when Options.Meter is set.
	metrics *telemetry.Metrics
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
	s := &Service{Name: svc.Name}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.Balancer, err = lb.New(svc.BalancerConfig(), opts.Logger); err != nil {
		return nil, fmt.Errorf("service %q: %w", svc.Name, err)
	}
	if svc.Discovery.Kind == config.StaticKind {
		if err := s.Balancer.Sync(svc.Discovery.Specs()); err != nil {
			return nil, fmt.Errorf("service %q: %w", svc.Name, err)
		}
	} else {
		settings, diags := opts.Host.Settings(ctx, opts.Config, svc.Discovery)
		if diags.HasErrors() {
			return nil, fmt.Errorf("service %q: %s", svc.Name, diags.Error())
		}
		s.Source, err = opts.Host.Follow(ctx, svc.Discovery.Kind, discovery.Pin(opts.Config, svc.Discovery.Kind), settings, svc.Name, s.Balancer)
		if err != nil {
			return nil, fmt.Errorf("service %q: %w", svc.Name, err)
		}
	}
	clientCfg := &rpc.LoadBalancedClientConfig{Retry: svc.Retry, Client: svc.Client, Hedging: svc.Hedging}
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
		if src := s.Source; src != nil {
			s.metrics.ObserveDiscovery(svc.Discovery.Kind, func() (int, int) {
				st := src.Stats()
				return st.Updates, st.Restarts
			})
		}
	}
	if s.Client, err = rpc.NewLoadBalancedClient(s.Balancer, clientCfg, opts.Logger, clientOpts...); err != nil {
		return nil, fmt.Errorf("service %q: %w", svc.Name, err)
	}
	return s, nil
}

// Close stops the health checker and the discovery plugin, and closes every
// connection.
func (s *Service) Close() {
	if s.metrics != nil {
		_ = s.metrics.Close()
	}
	if s.Source != nil {
		s.Source.Close()
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
