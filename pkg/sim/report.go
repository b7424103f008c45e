package sim

import (
	"cmp"
	"fmt"
	"math"
	"net"
	"strconv"
	"time"

	"github.com/peervault/pvlb/pkg/lb"
)

// Report is the outcome of a run. Durations in JSON are milliseconds.
type Report struct {
	Service  string `json:"service"`
	Strategy string `json:"strategy"`
	// Measured marks a report of real calls (pvlb load): its times are
	// wall-clock, and it has no seed, events or time series.
	Measured bool `json:"measured,omitempty"`
	// StrategyName is the strategy block's name, when one was used.
	StrategyName string  `json:"strategy_name,omitempty"`
	Scenario     string  `json:"scenario,omitempty"`
	Seed         uint64  `json:"seed"`
	RPS          float64 `json:"rps,omitempty"`
	Concurrency  int     `json:"concurrency,omitempty"`
	// PeakConcurrency is the most a closed loop's steps put in flight.
	PeakConcurrency int `json:"peak_concurrency,omitempty"`
	Sessions        int `json:"sessions,omitempty"`
	// Keys and KeySkew are the run's request keys (Config.Keys).
	Keys    int     `json:"keys,omitempty"`
	KeySkew float64 `json:"key_skew,omitempty"`
	// CacheHits and CacheMisses count keyed attempts on servers with a
	// cache (config.Behaviour.CacheKeys) that found their key or not.
	CacheHits   int `json:"cache_hits,omitempty"`
	CacheMisses int `json:"cache_misses,omitempty"`
	Clients     int `json:"clients,omitempty"`

	Requests  int `json:"requests"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	// Retries counts attempts after the first; Recovered counts requests
	// that failed at first and then succeeded elsewhere.
	Retries   int `json:"retries"`
	Recovered int `json:"recovered"`
	// RetriesRefused counts retries the retry budget or throttling did
	// not allow (the request failed with its last error), and
	// PerTryTimeouts the attempts the per-try timeout gave up on.
	RetriesRefused int `json:"retries_refused,omitempty"`
	PerTryTimeouts int `json:"per_try_timeouts,omitempty"`
	// PushbackStops counts failed requests not retried because their
	// server's pushback said not to.
	PushbackStops int `json:"pushback_stops,omitempty"`
	// Overloaded counts attempts the circuit breakers or the rate limit
	// refused (OverloadedCode), and Limited the balancer's own counts.
	Overloaded int `json:"overloaded,omitempty"`
	// Hedges counts hedged copies sent after a request's first, and
	// HedgeWins those that answered first.
	Hedges    int             `json:"hedges,omitempty"`
	HedgeWins int             `json:"hedge_wins,omitempty"`
	Limited   *lb.LimitCounts `json:"limited,omitempty"`
	// NoHealthy counts picks that found no server able to take traffic.
	NoHealthy int `json:"no_healthy_picks"`
	// Zones are the attempts each zone took, when the service routes by
	// zone (a locality block); CrossZone is the share of attempts that
	// left their client's zone: LocalZone, or, for a fleet spread over
	// zones (client_zones), each client's own.
	Zones     []ZoneReport `json:"zones,omitempty"`
	LocalZone string       `json:"local_zone,omitempty"`
	CrossZone *float64     `json:"cross_zone,omitempty"`
	// Fleet is how a fleet of clients (Clients above one) spreads over
	// the servers, with or without subsets.
	Fleet *FleetReport `json:"fleet,omitempty"`
	// Dropped counts attempts refused because a server's queue was full
	// (MaxQueue).
	Dropped int `json:"dropped,omitempty"`

	SimulatedTime Millis      `json:"simulated_time_ms"`
	Throughput    float64     `json:"throughput_rps"` // successes per simulated second
	Latency       Percentiles `json:"latency"`        // end to end, successful requests
	// LatencyCDF is the same distribution at CDFQuantiles.
	LatencyCDF []CDFPoint     `json:"latency_cdf"`
	Servers    []ServerReport `json:"servers"`
	Events     []Event        `json:"events"`
	Timeline   Timeline       `json:"timeline"`
	Load       []OfferedLoad  `json:"offered_load,omitempty"`
}

// CDFPoint is one quantile of a latency distribution.
type CDFPoint struct {
	Quantile float64 `json:"q"`
	Latency  Millis  `json:"ms"`
}

// OfferedLoad is a point of an open loop's offered rate over time, linear
// between points (two at one time make a step) and constant after the
// last.
type OfferedLoad struct {
	At  Millis  `json:"at_ms"`
	RPS float64 `json:"rps"`
}

// CDFQuantiles are where Report.LatencyCDF samples the distribution: every
// percent, then finer into the tail.
var CDFQuantiles = func() []float64 {
	var q []float64
	for i := 1; i <= 99; i++ {
		q = append(q, float64(i)/100)
	}
	return append(q, 0.995, 0.999, 0.9995, 0.9999, 1)
}()

// ServerReport is one server's part of a Report.
type ServerReport struct {
	// Holders counts the clients whose balancer has the server (all of
	// them, without subsets): its connections.
	Holders int    `json:"clients_holding,omitempty"`
	ID      string `json:"id"`
	Address string `json:"address"`
	Zone    string `json:"zone,omitempty"`
	Weight  int    `json:"weight"`
	Latency string `json:"latency_model"`
	// Requests counts attempts sent to this server; Share is its part of
	// all attempts and ExpectedShare what the strategy aims for.
	Requests      int             `json:"requests"`
	Share         float64         `json:"share"`
	ExpectedShare float64         `json:"expected_share"`
	Errors        int             `json:"errors"`
	AttemptTime   Percentiles     `json:"latency"` // per attempt, queueing included
	PeakInFlight  int             `json:"peak_in_flight"`
	CacheHits     int             `json:"cache_hits,omitempty"`
	CacheMisses   int             `json:"cache_misses,omitempty"`
	FinalHealth   lb.HealthStatus `json:"final_health"`
	// Outcomes are the balancer's own counts for this server: what every
	// finished attempt said about it, and its health checks.
	Outcomes lb.OutcomeCounts `json:"outcomes"`
	// LatencyEWMA is the balancer's moving average of the server's
	// latency at the end of the run.
	LatencyEWMA Millis `json:"latency_ewma_ms"`
	// Timeline counts attempts per step of Report.Timeline.
	Timeline []int `json:"timeline"`
}

// FleetReport is how a fleet of clients spreads over the servers: how
// many clients hold each (their connections: all of them, without
// subsets), and each one's requests beside the mean.
type FleetReport struct {
	Clients    int     `json:"clients"`
	SubsetSize int     `json:"subset_size,omitempty"`
	MinHolders int     `json:"min_clients_per_server"`
	MaxHolders int     `json:"max_clients_per_server"`
	MinLoad    float64 `json:"min_requests_vs_mean"`
	MaxLoad    float64 `json:"max_requests_vs_mean"`
}

// ZoneReport is one zone's part of a Report.
type ZoneReport struct {
	Zone     string  `json:"zone"`
	Servers  int     `json:"servers"`
	Requests int     `json:"requests"`
	Share    float64 `json:"share"`
}

// tallyZones sums the servers' attempts by zone, in the order zones
// first appear, and the share that left localZone (when set). Nothing,
// unless the service routes by zone (zoned).
func (r *Report) tallyZones(zoned bool, localZone string) {
	if !zoned && localZone == "" {
		return
	}
	index := map[string]int{}
	total, cross := 0, 0
	for _, s := range r.Servers {
		i, ok := index[s.Zone]
		if !ok {
			i = len(r.Zones)
			index[s.Zone] = i
			r.Zones = append(r.Zones, ZoneReport{Zone: s.Zone})
		}
		r.Zones[i].Servers++
		r.Zones[i].Requests += s.Requests
		total += s.Requests
		if s.Zone != localZone {
			cross += s.Requests
		}
	}
	if len(r.Zones) == 1 && r.Zones[0].Zone == "" {
		r.Zones = nil // no server has a zone
		return
	}
	for i := range r.Zones {
		if total > 0 {
			r.Zones[i].Share = float64(r.Zones[i].Requests) / float64(total)
		}
	}
	if localZone != "" {
		share := 0.0
		if total > 0 {
			share = float64(cross) / float64(total)
		}
		r.LocalZone, r.CrossZone = localZone, &share
	}
}

// Percentiles summarises a latency distribution.
type Percentiles struct {
	P50  Millis `json:"p50_ms"`
	P90  Millis `json:"p90_ms"`
	P99  Millis `json:"p99_ms"`
	P999 Millis `json:"p999_ms"`
	Max  Millis `json:"max_ms"`
}

// Event is something that happened to a server during the run.
type Event struct {
	At     time.Duration `json:"-"`
	AtMS   Millis        `json:"at_ms"`
	Server string        `json:"server"`
	What   string        `json:"what"`
	Source EventSource   `json:"source"`
}

// EventSource says who an event comes from.
type EventSource string

const (
	// FromScenario is what the scenario or the flags made happen: a
	// server slowing, failing, going down, joining; the load changing.
	FromScenario EventSource = "scenario"
	// FromHealth is the health checks' verdict on a server.
	FromHealth EventSource = "health"
	// FromBalancer is the balancer's own doing: outlier ejections and
	// returns, panic mode.
	FromBalancer EventSource = "balancer"
)

// Millis is a duration that encodes in JSON as fractional milliseconds.
type Millis time.Duration

// MarshalJSON writes milliseconds with microsecond precision.
func (m Millis) MarshalJSON() ([]byte, error) {
	us := time.Duration(m).Round(time.Microsecond).Microseconds()
	return strconv.AppendFloat(nil, float64(us)/1000, 'f', -1, 64), nil
}

func percentiles(h *histogram) Percentiles {
	return Percentiles{
		P50:  Millis(h.quantile(0.50)),
		P90:  Millis(h.quantile(0.90)),
		P99:  Millis(h.quantile(0.99)),
		P999: Millis(h.quantile(0.999)),
		Max:  Millis(h.max),
	}
}

// outcomes sums a server's outcome counts over the clients; its latency
// average is the mean of the clients' that have one.
func (s *simulation) outcomes(idx int32) lb.OutcomeCounts {
	var sum lb.OutcomeCounts
	var ewma time.Duration
	var with int
	for _, c := range s.clients {
		if c.eps[idx] == nil {
			continue // outside this client's subset
		}
		o := c.eps[idx].Outcomes()
		sum.Successes += o.Successes
		sum.Failures += o.Failures
		sum.Neutral += o.Neutral
		sum.ChecksPassed += o.ChecksPassed
		sum.ChecksFailed += o.ChecksFailed
		if o.LatencyEWMA > 0 {
			ewma += o.LatencyEWMA
			with++
		}
	}
	if with > 0 {
		sum.LatencyEWMA = ewma / time.Duration(with)
	}
	return sum
}

func (s *simulation) report() *Report {
	b := s.cfg.Balancer
	r := &Report{
		Service:        b.Service,
		Strategy:       b.Strategy.Kind,
		StrategyName:   s.cfg.StrategyName,
		Seed:           s.cfg.Seed,
		RPS:            s.cfg.RPS,
		Concurrency:    s.cfg.Concurrency,
		Sessions:       s.cfg.Sessions,
		Keys:           s.cfg.Keys,
		KeySkew:        s.cfg.KeySkew,
		Clients:        s.cfg.Clients,
		Requests:       s.done,
		Succeeded:      s.succeeded,
		Failed:         s.failed,
		Retries:        s.retries,
		Recovered:      s.recovered,
		RetriesRefused: s.refused,
		PerTryTimeouts: s.perTryTimeouts,
		PushbackStops:  s.pushbackStops,
		Overloaded:     s.overloaded,
		Hedges:         s.hedges,
		HedgeWins:      s.hedgeWins,
		Limited:        s.limited(),
		NoHealthy:      s.noHealthy,
		Dropped:        s.dropped,
		SimulatedTime:  Millis(s.now),
		Latency:        percentiles(&s.latency),
		Events:         s.log,
		Scenario:       s.cfg.Scenario,
	}
	r.LatencyCDF = latencyCDF(&s.latency)
	if r.Concurrency > 0 {
		r.PeakConcurrency = r.Concurrency
		for _, cc := range s.cfg.ConcurrencyChanges {
			r.PeakConcurrency = max(r.PeakConcurrency, cc.Concurrency)
		}
	}
	if s.cfg.RPS > 0 {
		for _, p := range s.load.points {
			r.Load = append(r.Load, OfferedLoad{At: Millis(p.t), RPS: p.rps})
		}
	}
	timeline, attempts := s.timeline.series(s.now)
	r.Timeline = timeline
	if s.now > 0 {
		r.Throughput = float64(s.succeeded) / time.Duration(s.now).Seconds()
	}
	totalAttempts, totalWeight := 0, 0
	for _, sv := range s.servers {
		totalAttempts += sv.attempts
		totalWeight += sv.Weight
	}
	for idx, sv := range s.servers {
		holders := 0
		for _, c := range s.clients {
			if c.eps[idx] != nil {
				holders++
			}
		}
		sr := ServerReport{
			Holders:      holders,
			ID:           sv.ID,
			Address:      net.JoinHostPort(sv.Host, strconv.Itoa(sv.Port)),
			Zone:         sv.Zone,
			Weight:       sv.Weight,
			Latency:      sv.Latency.String(),
			Requests:     sv.attempts,
			Errors:       sv.errors,
			AttemptTime:  percentiles(&sv.hist),
			PeakInFlight: sv.peak,
			CacheHits:    sv.hits,
			CacheMisses:  sv.misses,
			FinalHealth:  s.health(int32(idx)),
			Outcomes:     s.outcomes(int32(idx)),
			Timeline:     attempts[idx],
		}
		sr.LatencyEWMA = Millis(sr.Outcomes.LatencyEWMA)
		r.CacheHits += sv.hits
		r.CacheMisses += sv.misses
		if totalAttempts > 0 {
			sr.Share = float64(sv.attempts) / float64(totalAttempts)
		}
		if b.Locality == nil { // by zone, the share depends on health: none is expected
			sr.ExpectedShare = expectedShare(b.Strategy.Kind, sv.Weight, totalWeight, len(s.servers))
		}
		r.Servers = append(r.Servers, sr)
	}
	if len(s.clients) > 1 && len(r.Servers) > 0 {
		sr := &FleetReport{Clients: len(s.clients), MinHolders: len(s.clients), MinLoad: math.Inf(1)}
		if sub := b.Subset; sub != nil {
			sr.SubsetSize = sub.Size
		}
		mean := float64(totalAttempts) / float64(len(r.Servers))
		for _, sv := range r.Servers {
			sr.MinHolders, sr.MaxHolders = min(sr.MinHolders, sv.Holders), max(sr.MaxHolders, sv.Holders)
			if mean > 0 {
				sr.MinLoad, sr.MaxLoad = min(sr.MinLoad, float64(sv.Requests)/mean), max(sr.MaxLoad, float64(sv.Requests)/mean)
			}
		}
		if math.IsInf(sr.MinLoad, 1) {
			sr.MinLoad = 0
		}
		r.Fleet = sr
	}
	local := cmp.Or(s.cfg.LocalZone, localZone(b))
	fleet := clientZones(s.cfg) != nil
	if fleet {
		local = "" // each client has its own
	}
	r.tallyZones(b.Locality != nil || fleet, local)
	if fleet && totalAttempts > 0 {
		share := float64(s.crossZone) / float64(totalAttempts)
		r.CrossZone = &share
	}
	for i := range r.Events {
		r.Events[i].AtMS = Millis(r.Events[i].At)
	}
	return r
}

// localZone is the client's zone a balancer's locality block names.
func localZone(b lb.Config) string {
	if b.Locality != nil {
		return b.Locality.LocalZone
	}
	return ""
}

// latencyCDF samples h at CDFQuantiles; nil when h is empty.
func latencyCDF(h *histogram) []CDFPoint {
	var out []CDFPoint
	if h.total > 0 {
		for _, q := range CDFQuantiles {
			out = append(out, CDFPoint{Quantile: q, Latency: Millis(h.quantile(q))})
		}
	}
	return out
}

// expectedShare is what a strategy aims to give a server of weight w: its
// weight's part for weighted, else an equal part.
func expectedShare(kind string, w, totalWeight, servers int) float64 {
	if kind == lb.Weighted && totalWeight > 0 {
		return float64(w) / float64(totalWeight)
	}
	return 1 / float64(servers)
}

// Label names the run's strategy: its block's name and kind, or the kind.
func (r *Report) Label() string {
	if r.StrategyName != "" && r.StrategyName != r.Strategy {
		return fmt.Sprintf("%s (%s)", r.StrategyName, r.Strategy)
	}
	return r.Strategy
}

// Traffic describes the run's offered load and who sent it.
func (r *Report) Traffic() string {
	mode := fmt.Sprintf("open loop at %g rps", r.RPS)
	peak := r.RPS
	for _, p := range r.Load {
		peak = max(peak, p.RPS)
	}
	if peak != r.RPS || len(r.Load) > 1 && r.Load[len(r.Load)-1].RPS != r.RPS {
		mode = fmt.Sprintf("open loop starting at %g rps, %g at most", r.RPS, peak)
	}
	if r.Concurrency > 0 {
		mode = fmt.Sprintf("closed loop, %d in flight", r.Concurrency)
		if r.PeakConcurrency != r.Concurrency {
			mode = fmt.Sprintf("closed loop starting at %d in flight, %d at most", r.Concurrency, r.PeakConcurrency)
		}
	}
	if r.Sessions > 0 {
		mode += fmt.Sprintf(", %d sticky sessions", r.Sessions)
	}
	if r.Keys > 0 {
		mode += fmt.Sprintf(", %d keys", r.Keys)
		if r.KeySkew > 0 {
			mode += fmt.Sprintf(" (Zipf %g)", r.KeySkew)
		}
	}
	if r.Clients > 1 {
		mode += fmt.Sprintf(", from %d clients", r.Clients)
	}
	return mode
}

// CacheHitRate is the share of keyed attempts on caching servers that
// found their key; false when there were none.
func (r *Report) CacheHitRate() (float64, bool) {
	n := r.CacheHits + r.CacheMisses
	if n == 0 {
		return 0, false
	}
	return float64(r.CacheHits) / float64(n), true
}

// FormatRatio writes a ratio of two figures as "0.84×", with two
// significant digits below 0.1 so that a large gain does not read 0.00×.
func FormatRatio(f float64) string {
	if f > 0 && f < 0.1 {
		return strconv.FormatFloat(f, 'g', 2, 64) + "×"
	}
	return strconv.FormatFloat(f, 'f', 2, 64) + "×"
}

// limited sums the clients' limit counts; nil without limits.
func (s *simulation) limited() *lb.LimitCounts {
	var sum *lb.LimitCounts
	for _, c := range s.clients {
		if l := c.balancer.Limited(); l != nil {
			if sum == nil {
				sum = &lb.LimitCounts{}
			}
			sum.BreakerSkips += l.BreakerSkips
			sum.RateLimitSkips += l.RateLimitSkips
			sum.Overloaded += l.Overloaded
		}
	}
	return sum
}
