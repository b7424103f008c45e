package lb

import (
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
)

// HealthStatus is what the LoadBalancer believes of an endpoint's health.
type HealthStatus int32

const (
	// HealthUnknown means no health check has concluded yet. Unknown
	// endpoints still receive traffic: a fleet without health checks, or one
	// just started, must not look empty.
	HealthUnknown HealthStatus = iota
	// HealthHealthy means the endpoint passed its health checks.
	HealthHealthy
	// HealthUnhealthy means the endpoint failed; pickers skip it.
	HealthUnhealthy
)

var healthNames = [...]string{"unknown", "healthy", "unhealthy"}

func (h HealthStatus) String() string {
	if h < 0 || int(h) >= len(healthNames) {
		return "HealthStatus(" + strconv.Itoa(int(h)) + ")"
	}
	return healthNames[h]
}

// MarshalText encodes the status as its name, so JSON shows "healthy".
func (h HealthStatus) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText decodes a status name.
func (h *HealthStatus) UnmarshalText(b []byte) error {
	for i, name := range healthNames {
		if string(b) == name {
			*h = HealthStatus(i)
			return nil
		}
	}
	return fmt.Errorf("unknown health status %q (want unknown, healthy or unhealthy)", b)
}

// EndpointSpec describes an endpoint to add to a LoadBalancer.
type EndpointSpec struct {
	ID       string
	Host     string
	Port     int
	Weight   int
	Zone     string
	Metadata map[string]string
	// Health is what discovery reports (Consul's checks, say); Unknown
	// when it reports nothing. See Endpoint.Health.
	Health HealthStatus
}

// MaxWeight is the largest weight an endpoint may have. It matches Consul's
// service weights and keeps weighted schedules small.
const MaxWeight = 65535

// MaxPort is the largest TCP port.
const MaxPort = 65535

// ValidWeight and ValidPort are the limits on an endpoint's weight and
// port; the configuration, the discovery host and the LoadBalancer all
// check with them.
func ValidWeight(w int) bool { return w >= 1 && w <= MaxWeight }

// ValidPort reports whether p is a TCP port an endpoint can listen on.
func ValidPort(p int) bool { return p >= 1 && p <= MaxPort }

func (s EndpointSpec) validate() error {
	switch {
	case s.ID == "":
		return fmt.Errorf("endpoint id is empty")
	case s.Host == "":
		return fmt.Errorf("endpoint %q: host is empty", s.ID)
	case !ValidPort(s.Port):
		return fmt.Errorf("endpoint %q: port %d is outside 1-%d", s.ID, s.Port, MaxPort)
	case !ValidWeight(s.Weight):
		return fmt.Errorf("endpoint %q: weight %d is outside 1-%d", s.ID, s.Weight, MaxWeight)
	case s.Health < HealthUnknown || s.Health > HealthUnhealthy:
		return fmt.Errorf("endpoint %q: invalid health %d", s.ID, s.Health)
	}
	return nil
}

// Endpoint is one server of a service as the LoadBalancer tracks it. A
// pointer to it stays valid, and identifies the endpoint, for as long as the
// endpoint is in the LoadBalancer; pickers return these pointers so that a
// pick allocates nothing. The exported fields must be treated as read-only.
type Endpoint struct {
	ID       string
	Host     string
	Port     int
	Address  string // host:port, ready to dial
	Weight   int
	Zone     string
	Metadata map[string]string

	health    atomic.Int32 // from active checks (SetHealth, the HealthChecker)
	discovery atomic.Int32 // as discovery reports it
	removed   atomic.Bool

	// load packs the picks (high bits) and the calls in flight (low
	// inflightBits) of a strategy that reads load (least_connections), so
	// that its pick costs one atomic add; one word every core writes is the
	// price of exact load, and strategies that do not read it do not pay:
	// their picks count on the stripes.
	_    cacheLinePad
	load atomic.Uint64
	// rtt is peak_ewma's latency estimate (see packEstimate), written
	// with load by the calls of that strategy alone.
	rtt atomic.Uint64
	// consecutive counts failures in a row, for outlier detection.
	consecutive atomic.Int32
	_           cacheLinePad
	ejected     atomic.Bool   // by outlier detection
	rampStart   atomic.Int64  // when slow start began, on the balancer's clock; 0: not warming
	ejections   atomic.Uint64 // times ejected
	// rateTAT is the rate limit's theoretical arrival time (see takeToken).
	rateTAT atomic.Int64
	// reported is what the endpoint's load reports say, for
	// weighted_round_robin.
	reported loadWeight
	// stripes hold the counters the statistics read. A pick and an outcome
	// each add to the stripe of the calling goroutine's stack, so that
	// calls on different cores rarely write the same cache line.
	stripes [stripeCount]stripe
}

const (
	inflightBits = 24 // up to 16M calls in flight on one endpoint
	inflightMask = 1<<inflightBits - 1
	pickDelta    = 1<<inflightBits | 1 // one more pick, one more in flight
)

// inFlight is the calls in flight of a strategy that reads load.
func (e *Endpoint) inFlight() int64 { return int64(e.load.Load() & inflightMask) }

func newEndpoint(s EndpointSpec) *Endpoint {
	e := &Endpoint{
		ID:       s.ID,
		Host:     s.Host,
		Port:     s.Port,
		Address:  net.JoinHostPort(s.Host, strconv.Itoa(s.Port)),
		Weight:   s.Weight,
		Zone:     s.Zone,
		Metadata: s.Metadata,
	}
	e.discovery.Store(int32(s.Health))
	return e
}

// Health combines the two views of an endpoint's health, as Envoy does
// with EDS health and active checks: it is unhealthy when either says so,
// healthy when the active checks say so (or, before any check, discovery
// does), and unknown otherwise.
func (e *Endpoint) Health() HealthStatus {
	active, reported := e.ActiveHealth(), e.DiscoveryHealth()
	switch {
	case active == HealthUnhealthy || reported == HealthUnhealthy:
		return HealthUnhealthy
	case active == HealthHealthy || reported == HealthHealthy:
		return HealthHealthy
	}
	return HealthUnknown
}

// ActiveHealth is the endpoint's health from active checks alone.
func (e *Endpoint) ActiveHealth() HealthStatus { return HealthStatus(e.health.Load()) }

// DiscoveryHealth is the endpoint's health as discovery reports it.
func (e *Endpoint) DiscoveryHealth() HealthStatus { return HealthStatus(e.discovery.Load()) }

// Ejected reports whether outlier detection has taken the endpoint out.
func (e *Endpoint) Ejected() bool { return e.ejected.Load() }

// Removed reports whether the endpoint has left its LoadBalancer; a
// connection kept for it can drain and close.
func (e *Endpoint) Removed() bool { return e.removed.Load() }

// usable reports whether the endpoint may take new traffic right now.
func (e *Endpoint) usable() bool {
	return !e.removed.Load() && e.Health() != HealthUnhealthy && !e.ejected.Load()
}

func (e *Endpoint) String() string { return e.ID + "(" + e.Address + ")" }

// tried reports whether e is in the list of endpoints already attempted.
// Retries are few, so a linear scan beats any set.
func tried(list []*Endpoint, e *Endpoint) bool {
	for _, t := range list {
		if t == e {
			return true
		}
	}
	return false
}
