// Package telemetry records a balancer's metrics through the
// OpenTelemetry metric API, on a MeterProvider its user passes: nothing
// global, nothing recorded without one. The balancer's own counters are
// read when the metrics are collected (observable instruments), so a
// pick and an outcome cost what they cost without metrics; only each
// attempt's duration is recorded as it ends. docs/metrics.md lists every
// metric.
package telemetry

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/statuscode"
)

// ScopeName is the instrumentation scope of pvlb's metrics.
const ScopeName = "github.com/peervault/pvlb"

// Attribute keys, grpc-go's where it has one (gRFC A66).
const (
	TargetKey   = attribute.Key("grpc.target")
	MethodKey   = attribute.Key("grpc.method")
	StatusKey   = attribute.Key("grpc.status")
	EndpointKey = attribute.Key("pvlb.endpoint")
	AddressKey  = attribute.Key("pvlb.address")
	// LocalityKey is the endpoint's zone, gRFC A78's attribute name; left
	// out when it has none.
	LocalityKey = attribute.Key("grpc.lb.locality")
	OutcomeKey  = attribute.Key("pvlb.outcome")
	HealthKey   = attribute.Key("pvlb.health")
	ResultKey   = attribute.Key("pvlb.result")
	LimitKey    = attribute.Key("pvlb.limit")
	EventKey    = attribute.Key("pvlb.event")
	SourceKey   = attribute.Key("pvlb.discovery")
	StateKey    = attribute.Key("pvlb.state")
)

// Metrics is one balancer's metrics. Its methods are safe for concurrent
// use.
type Metrics struct {
	balancer *lb.LoadBalancer
	target   attribute.KeyValue
	attempts metric.Float64Histogram
	reg      metric.Registration

	mu      sync.RWMutex
	options map[attemptKey]metric.MeasurementOption // attribute sets, built once each
	// clients are the call counters of the clients that use these
	// metrics (see ObserveCalls).
	clients []func() CallCounts
	// discovery is the service's discovery plugin's counts, when it has
	// one (see ObserveDiscovery).
	discovery     func() (updates, restarts int)
	discoveryKind attribute.KeyValue
}

type attemptKey struct {
	endpoint *lb.Endpoint
	method   string
	code     statuscode.Code
}

// CallCounts are what a client counts of its calls, for the metrics.
type CallCounts struct {
	Calls, Retries, RetriesRefused, Hedges, HedgeWins uint64
}

// Attempt-duration buckets, in seconds: grpc-go's for its attempt
// duration (gRFC A66).
var durationBuckets = []float64{0, 0.00001, 0.00005, 0.0001, 0.0003, 0.0006, 0.0008, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.013, 0.016, 0.02, 0.025, 0.03, 0.04, 0.05, 0.065, 0.08, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3, 0.4, 0.5, 0.65, 0.8, 1, 2, 5, 10, 20, 50, 100}

// New registers b's metrics on mp; Close unregisters them.
func New(mp metric.MeterProvider, b *lb.LoadBalancer) (*Metrics, error) {
	meter := mp.Meter(ScopeName)
	m := &Metrics{balancer: b, target: TargetKey.String(b.Service()), options: map[attemptKey]metric.MeasurementOption{}}
	var err error
	if m.attempts, err = meter.Float64Histogram("pvlb.client.attempt.duration", metric.WithUnit("s"),
		metric.WithDescription("How long each attempt of a call took, from its pick to its answer, by endpoint, method and status."),
		metric.WithExplicitBucketBoundaries(durationBuckets...)); err != nil {
		return nil, err
	}
	counter := func(name, unit, desc string) (metric.Int64ObservableCounter, error) {
		return meter.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
	}
	gauge := func(name, unit, desc string) (metric.Int64ObservableGauge, error) {
		return meter.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
	}
	picks, err1 := counter("pvlb.endpoint.picks", "{pick}", "Picks of each endpoint.")
	calls, err2 := counter("pvlb.endpoint.calls", "{call}", "Calls that ended on each endpoint, by what they said about it: success, failure or neutral.")
	inFlight, err3 := gauge("pvlb.endpoint.in_flight", "{call}", "Calls in flight on each endpoint.")
	health, err4 := gauge("pvlb.endpoint.health", "", "1 for each endpoint's health (healthy, unhealthy or unknown), 0 for the others.")
	ejected, err5 := gauge("pvlb.endpoint.ejected", "", "1 while outlier detection keeps the endpoint out.")
	ejections, err6 := counter("pvlb.endpoint.ejections", "{ejection}", "Times outlier detection ejected each endpoint.")
	checks, err7 := counter("pvlb.endpoint.health_checks", "{check}", "Health checks of each endpoint, by result: passed or failed.")
	ewma, err8 := meter.Float64ObservableGauge("pvlb.endpoint.latency_ewma", metric.WithUnit("s"),
		metric.WithDescription("The balancer's moving average of each endpoint's latency."))
	panicMode, err9 := gauge("pvlb.service.panic", "", "1 while too few endpoints may take traffic and the balancer uses them all (panic mode).")
	limited, err10 := counter("pvlb.service.limited", "{pick}", "Picks that skipped an endpoint at its circuit breaker or rate limit, and calls refused because none could take them, by limit.")
	clientCalls, err11 := counter("pvlb.client.calls", "{call}", "Calls the clients made, with their retries, retries the budget refused, hedges and hedges that answered first, by event.")
	endpoints, err14 := gauge("pvlb.service.endpoints", "{endpoint}", "The service's endpoints, and those that may take traffic now (not unhealthy, not ejected; all in panic mode), by state: all or eligible.")
	updates, err12 := counter("pvlb.discovery.updates", "{update}", "Endpoint lists the service's discovery plugin delivered.")
	restarts, err13 := counter("pvlb.discovery.restarts", "{restart}", "Times the service's discovery plugin was started again after it failed.")
	for _, e := range []error{err1, err2, err3, err4, err5, err6, err7, err8, err9, err10, err11, err12, err13, err14} {
		if e != nil {
			return nil, e
		}
	}
	m.reg, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := b.GetServerStats()
		target := metric.WithAttributes(m.target)
		for _, s := range st.Servers {
			ep := []attribute.KeyValue{m.target, EndpointKey.String(s.ID), AddressKey.String(s.Address)}
			if s.Zone != "" {
				ep = append(ep, LocalityKey.String(s.Zone))
			}
			with := func(extra ...attribute.KeyValue) metric.ObserveOption {
				return metric.WithAttributes(append(ep[:len(ep):len(ep)], extra...)...)
			}
			o.ObserveInt64(picks, int64(s.TotalRequests), with())
			o.ObserveInt64(calls, int64(s.Successes), with(OutcomeKey.String("success")))
			o.ObserveInt64(calls, int64(s.Failures), with(OutcomeKey.String("failure")))
			o.ObserveInt64(calls, int64(s.Neutral), with(OutcomeKey.String("neutral")))
			o.ObserveInt64(inFlight, s.ActiveConnections, with())
			for _, h := range []lb.HealthStatus{lb.HealthHealthy, lb.HealthUnhealthy, lb.HealthUnknown} {
				o.ObserveInt64(health, boolInt(s.Health == h), with(HealthKey.String(h.String())))
			}
			o.ObserveInt64(ejected, boolInt(s.Ejected), with())
			o.ObserveInt64(ejections, int64(s.Ejections), with())
			o.ObserveInt64(checks, int64(s.ChecksPassed), with(ResultKey.String("passed")))
			o.ObserveInt64(checks, int64(s.ChecksFailed), with(ResultKey.String("failed")))
			if s.LatencyEWMA > 0 {
				o.ObserveFloat64(ewma, s.LatencyEWMA.Seconds(), with())
			}
		}
		o.ObserveInt64(panicMode, boolInt(st.Panic), target)
		o.ObserveInt64(endpoints, int64(st.TotalServers), metric.WithAttributes(m.target, StateKey.String("all")))
		o.ObserveInt64(endpoints, int64(st.EligibleServers), metric.WithAttributes(m.target, StateKey.String("eligible")))
		// Zero without limits, so that a dashboard's series exist.
		var l lb.LimitCounts
		if st.Limited != nil {
			l = *st.Limited
		}
		o.ObserveInt64(limited, int64(l.BreakerSkips), metric.WithAttributes(m.target, LimitKey.String("circuit_breaker")))
		o.ObserveInt64(limited, int64(l.RateLimitSkips), metric.WithAttributes(m.target, LimitKey.String("rate_limit")))
		o.ObserveInt64(limited, int64(l.Overloaded), metric.WithAttributes(m.target, LimitKey.String("overloaded")))
		m.mu.RLock()
		if m.discovery != nil {
			u, r := m.discovery()
			o.ObserveInt64(updates, int64(u), metric.WithAttributes(m.target, m.discoveryKind))
			o.ObserveInt64(restarts, int64(r), metric.WithAttributes(m.target, m.discoveryKind))
		}
		var sum CallCounts
		for _, c := range m.clients {
			cc := c()
			sum.Calls += cc.Calls
			sum.Retries += cc.Retries
			sum.RetriesRefused += cc.RetriesRefused
			sum.Hedges += cc.Hedges
			sum.HedgeWins += cc.HedgeWins
		}
		m.mu.RUnlock()
		if len(m.clients) > 0 {
			for event, n := range map[string]uint64{"call": sum.Calls, "retry": sum.Retries, "retry_refused": sum.RetriesRefused, "hedge": sum.Hedges, "hedge_win": sum.HedgeWins} {
				o.ObserveInt64(clientCalls, int64(n), metric.WithAttributes(m.target, EventKey.String(event)))
			}
		}
		return nil
	}, picks, calls, inFlight, health, ejected, ejections, checks, ewma, panicMode, limited, clientCalls, updates, restarts, endpoints)
	if err != nil {
		return nil, err
	}
	return m, nil
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// ObserveCalls adds a client's call counters to the metrics.
func (m *Metrics) ObserveCalls(counts func() CallCounts) {
	m.mu.Lock()
	m.clients = append(m.clients, counts)
	m.mu.Unlock()
}

// ObserveDiscovery adds the counts of the service's discovery plugin, of
// kind, to the metrics.
func (m *Metrics) ObserveDiscovery(kind string, counts func() (updates, restarts int)) {
	m.mu.Lock()
	m.discovery, m.discoveryKind = counts, SourceKey.String(kind)
	m.mu.Unlock()
}

// Attempt records one attempt of a call to method on e: how long it took
// and its status. It allocates nothing once the endpoint, method and
// status have been seen, but for the API's option slice.
func (m *Metrics) Attempt(ctx context.Context, method string, e *lb.Endpoint, code statuscode.Code, took time.Duration) {
	k := attemptKey{e, method, code}
	m.mu.RLock()
	opt, ok := m.options[k]
	m.mu.RUnlock()
	if !ok {
		// Few attributes: the SDK normalizes every one on each record.
		opt = metric.WithAttributeSet(attribute.NewSet(m.target, MethodKey.String(method), StatusKey.String(code.String()),
			EndpointKey.String(e.ID)))
		m.mu.Lock()
		if len(m.options) > maxAttributeSets {
			clear(m.options) // endpoints come and go: forget the old ones' sets
		}
		m.options[k] = opt
		m.mu.Unlock()
	}
	m.attempts.Record(ctx, took.Seconds(), opt)
}

// maxAttributeSets bounds the cache of attribute sets.
const maxAttributeSets = 100_000

// Close unregisters the metrics' callback.
func (m *Metrics) Close() error { return m.reg.Unregister() }
