// Package service wires one configured service into running parts: its
// LoadBalancer, the connections to its endpoints, the HealthChecker that
// watches them and the LoadBalancedClient that sends calls. The CLI runs on
// it; Go programs that load pvlb's HCL can too.
package service

import (
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/grpc"

	"github.com/peervault/pvlb/pkg/config"
	"github.com/peervault/pvlb/pkg/lb"
)

// Service is a configured service, running.
type Service struct {
	Name     string
	Balancer *lb.LoadBalancer
	Pool     *lb.ConnPool
	Health   *lb.HealthChecker // nil unless Options.HealthChecks
	Client   *lb.LoadBalancedClient
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
}

// ErrNoStaticEndpoints is returned for a service whose endpoints come from
// a discovery plugin, which this build cannot run yet.
var ErrNoStaticEndpoints = errors.New("needs a discovery plugin")

// New builds and starts svc. Close stops everything it started.
func New(svc *config.Service, opts Options) (_ *Service, err error) {
	if svc.Discovery == nil || svc.Discovery.Kind != "static" {
		kind := "no"
		if svc.Discovery != nil {
			kind = svc.Discovery.Kind
		}
		return nil, fmt.Errorf("service %q finds its servers with %s discovery, which %w; only static endpoint lists are supported so far", svc.Name, kind, ErrNoStaticEndpoints)
	}
	s := &Service{Name: svc.Name}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.Balancer, err = lb.NewLoadBalancer(svc.LoadBalancerConfig(), opts.Logger); err != nil {
		return nil, fmt.Errorf("service %q: %w", svc.Name, err)
	}
	for _, ep := range svc.Discovery.Endpoints {
		spec := lb.EndpointSpec{ID: ep.Name, Host: ep.Host, Port: ep.Port, Weight: ep.Weight, Zone: ep.Zone, Metadata: ep.Metadata}
		if err := s.Balancer.AddEndpoint(spec); err != nil {
			return nil, fmt.Errorf("service %q: %w", svc.Name, err)
		}
	}
	clientCfg := svc.ClientConfig()
	if s.Pool, err = lb.NewConnPool(s.Balancer, clientCfg, opts.Logger, opts.DialOptions...); err != nil {
		return nil, fmt.Errorf("service %q: %w", svc.Name, err)
	}
	if opts.HealthChecks {
		hopts := []lb.HealthOption{
			lb.WithThresholds(svc.Health.UnhealthyThreshold, svc.Health.HealthyThreshold),
			lb.WithHealthService(svc.Health.Service),
		}
		if opts.OneShot {
			hopts = append(hopts, lb.WithThresholds(1, 1), lb.WithManualChecks())
		}
		s.Health = lb.NewHealthChecker(svc.Health.Interval, svc.Health.Timeout, opts.Logger, hopts...)
		if err := s.Health.Start(s.Balancer, s.Pool); err != nil {
			return nil, fmt.Errorf("service %q: %w", svc.Name, err)
		}
	}
	if s.Client, err = lb.NewLoadBalancedClient(s.Balancer, clientCfg, opts.Logger, lb.WithConnPool(s.Pool)); err != nil {
		return nil, fmt.Errorf("service %q: %w", svc.Name, err)
	}
	return s, nil
}

// Close stops the health checker and closes every connection.
func (s *Service) Close() {
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
