package lb

import (
	"fmt"
	"math"
	"slices"
	"sync/atomic"
)

// Locality modes.
const (
	// PreferLocal is Envoy's zone-aware routing: calls stay in the
	// client's zone while it has at least its share of the healthy
	// endpoints, and only the shortfall spills over, to the zones with
	// healthy endpoints to spare, in proportion to what they spare.
	PreferLocal = "prefer_local"
	// Priorities tries zones in a given order, as Envoy's priority levels:
	// a level takes all the calls while enough of it is healthy
	// (healthy share × overprovisioning_factor ≥ 100%), and hands the rest
	// on to the next.
	Priorities = "priorities"
)

// Defaults of a locality block, Envoy's.
const (
	DefaultMinClusterSize         = 6
	DefaultOverprovisioningFactor = 140
	// AnyZone in a priorities list stands for every zone it does not name,
	// endpoints without a zone among them.
	AnyZone = "*"
)

// Locality is a service's `locality` block: which zones its calls go to.
// The strategy picks within the zone chosen.
type Locality struct {
	// LocalZone is the client's own zone; prefer_local needs it.
	LocalZone string `json:"local_zone,omitempty"`
	// Mode is PreferLocal or Priorities.
	Mode string `json:"mode"`
	// MinClusterSize is Envoy's min_cluster_size: with fewer endpoints,
	// prefer_local balances over every zone. Zero means
	// DefaultMinClusterSize.
	MinClusterSize int `json:"min_cluster_size,omitempty"`
	// ClientZones weighs the fleet of clients by zone (how many clients,
	// or their share, in each), Envoy's local cluster. Empty means the
	// clients are spread over the zones as the service's endpoints are.
	ClientZones map[string]float64 `json:"client_zones,omitempty"`
	// Priorities lists the zones in order of preference; AnyZone stands
	// for the others.
	Priorities []string `json:"priorities,omitempty"`
	// OverprovisioningFactor, a percentage of at least 100, is Envoy's
	// overprovisioning_factor: a priority level keeps all the calls while
	// its healthy share times the factor is at least 100%. Zero means
	// DefaultOverprovisioningFactor.
	OverprovisioningFactor int `json:"overprovisioning_factor,omitempty"`
}

// Validate reports what is wrong with l for a service balanced by the
// strategy kind given.
func (l *Locality) Validate(strategy string) error {
	switch {
	case l.Mode != PreferLocal && l.Mode != Priorities:
		return fmt.Errorf("locality: mode must be %q or %q, not %q", PreferLocal, Priorities, l.Mode)
	case l.Mode == Priorities && l.LocalZone != "":
		return fmt.Errorf("locality: local_zone applies to mode %q; with priorities, list the zones in order", PreferLocal)
	case strategy == RingHash || strategy == Maglev:
		return fmt.Errorf("locality does not apply to %s: a key's endpoint must not depend on the caller's zone", strategy)
	case l.Mode == PreferLocal && l.LocalZone == "":
		return fmt.Errorf("locality: %s needs local_zone, the client's own zone", PreferLocal)
	case l.Mode == PreferLocal && len(l.Priorities) > 0:
		return fmt.Errorf("locality: priorities apply to mode %q, not %q", Priorities, PreferLocal)
	case l.Mode == Priorities && len(l.Priorities) == 0:
		return fmt.Errorf("locality: mode %q needs priorities, the zones in order of preference", Priorities)
	case l.Mode == Priorities && (l.MinClusterSize != 0 || len(l.ClientZones) > 0):
		return fmt.Errorf("locality: min_cluster_size and client_zones apply to mode %q, not %q", PreferLocal, Priorities)
	case l.Mode == PreferLocal && l.OverprovisioningFactor != 0:
		return fmt.Errorf("locality: overprovisioning_factor applies to mode %q, not %q", Priorities, PreferLocal)
	case l.MinClusterSize < 0 || l.MinClusterSize > MaxLimit:
		return fmt.Errorf("locality: min_cluster_size must be from 1 to %d, not %d", MaxLimit, l.MinClusterSize)
	case l.OverprovisioningFactor != 0 && (l.OverprovisioningFactor < 100 || l.OverprovisioningFactor > 1000):
		return fmt.Errorf("locality: overprovisioning_factor is a percentage from 100 to 1000, not %d", l.OverprovisioningFactor)
	}
	for i, z := range l.Priorities {
		if z == "" {
			return fmt.Errorf("locality: priority %d names no zone", i+1)
		}
		if slices.Contains(l.Priorities[:i], z) {
			return fmt.Errorf("locality: zone %q is listed twice in priorities", z)
		}
	}
	for z, w := range l.ClientZones {
		if !(w > 0) || math.IsInf(w, 0) {
			return fmt.Errorf("locality: client_zones weighs zone %q %g; weights must be above 0", z, w)
		}
	}
	return nil
}

// zoneGroup is the endpoints one zone (or priority level) offers, and the
// share of the calls it takes.
type zoneGroup struct {
	eligible []*Endpoint
	share    float64
}

// localityShares splits the calls between groups of eligible endpoints,
// as l says, given every endpoint (all, for the clients' spread and each
// level's size). It returns nil when zone routing does not apply: then
// the strategy balances over every eligible endpoint.
func (l *Locality) localityShares(all, eligible []*Endpoint) []zoneGroup {
	if l.Mode == Priorities {
		return l.priorityShares(all, eligible)
	}
	return l.preferLocalShares(all, eligible)
}

// preferLocalShares is Envoy's zone-aware routing
// (LoadBalancerBase::tryChooseLocalZoneHosts).
func (l *Locality) preferLocalShares(all, eligible []*Endpoint) []zoneGroup {
	minSize := l.MinClusterSize
	if minSize == 0 {
		minSize = DefaultMinClusterSize
	}
	if len(all) < minSize {
		return nil
	}
	zones := []string{l.LocalZone} // the local zone first
	index := map[string]int{l.LocalZone: 0}
	total := map[string]int{}
	for _, e := range all {
		total[e.Zone]++
		if _, ok := index[e.Zone]; !ok {
			index[e.Zone] = len(zones)
			zones = append(zones, e.Zone)
		}
	}
	groups := make([]zoneGroup, len(zones))
	for _, e := range eligible {
		g := &groups[index[e.Zone]]
		g.eligible = append(g.eligible, e)
	}
	if len(zones) < 2 || len(groups[0].eligible) == 0 {
		return nil // one zone, or none healthy here: nothing to prefer
	}
	// Each zone's share of the clients, and of the healthy endpoints.
	clients := make([]float64, len(zones))
	var clientSum float64
	for i, z := range zones {
		if len(l.ClientZones) > 0 {
			clients[i] = l.ClientZones[z]
		} else {
			clients[i] = float64(total[z])
		}
		clientSum += clients[i]
	}
	if clientSum == 0 {
		return nil
	}
	healthy := make([]float64, len(zones))
	for i := range groups {
		healthy[i] = float64(len(groups[i].eligible)) / float64(len(eligible))
		clients[i] /= clientSum
	}
	if healthy[0] >= clients[0] {
		groups[0].share = 1
		return groups
	}
	// The local zone takes what its healthy endpoints can; the rest goes
	// to the zones with healthy endpoints to spare, in proportion.
	groups[0].share = healthy[0] / clients[0]
	var spare float64
	for i := 1; i < len(zones); i++ {
		spare += max(0, healthy[i]-clients[i])
	}
	for i := 1; i < len(zones); i++ {
		if spare > 0 {
			groups[i].share = (1 - groups[0].share) * max(0, healthy[i]-clients[i]) / spare
		} else if len(eligible) > len(groups[0].eligible) {
			groups[i].share = (1 - groups[0].share) * float64(len(groups[i].eligible)) / float64(len(eligible)-len(groups[0].eligible))
		}
	}
	return groups
}

// priorityShares is Envoy's load between priority levels
// (distributeLoad): each level's availability is its healthy share
// times the overprovisioning factor, at most 100%; the levels take the
// calls in order, each as much as its availability, scaled up when the
// levels together have less than 100%.
func (l *Locality) priorityShares(all, eligible []*Endpoint) []zoneGroup {
	factor := l.OverprovisioningFactor
	if factor == 0 {
		factor = DefaultOverprovisioningFactor
	}
	level := func(zone string) int {
		if i := slices.Index(l.Priorities, zone); i >= 0 {
			return i
		}
		return slices.Index(l.Priorities, AnyZone) // -1: no level
	}
	groups := make([]zoneGroup, len(l.Priorities))
	sizes := make([]int, len(l.Priorities))
	for _, e := range all {
		if i := level(e.Zone); i >= 0 {
			sizes[i]++
		}
	}
	for _, e := range eligible {
		if i := level(e.Zone); i >= 0 {
			groups[i].eligible = append(groups[i].eligible, e)
		}
	}
	available := make([]float64, len(groups))
	var sum float64
	for i, g := range groups {
		if sizes[i] > 0 {
			available[i] = min(1, float64(factor)/100*float64(len(g.eligible))/float64(sizes[i]))
		}
		sum += available[i]
	}
	if sum == 0 {
		return nil // no level has a healthy endpoint: balance over what is eligible
	}
	normalized := min(1, sum)
	left := 1.0
	for i := range groups {
		groups[i].share = min(left, available[i]/normalized)
		left -= groups[i].share
	}
	return groups
}

// keepOnly narrows each group to the endpoints in allowed, keeping the
// shares the groups' health gave them.
func keepOnly(groups []zoneGroup, allowed []*Endpoint) []zoneGroup {
	in := make(map[*Endpoint]bool, len(allowed))
	for _, e := range allowed {
		in[e] = true
	}
	out := make([]zoneGroup, len(groups))
	for i, g := range groups {
		out[i].share = g.share
		for _, e := range g.eligible {
			if in[e] {
				out[i].eligible = append(out[i].eligible, e)
			}
		}
	}
	return out
}

// localityPicker draws a zone by its share of the calls, then lets that
// zone's picker choose. A retry that has tried every endpoint of the zone
// drawn goes to the picker over every eligible endpoint.
type localityPicker struct {
	zones []Picker
	// until[i] is the top of zone i's slice of the 64-bit draws; the
	// last is the largest value, so every draw lands in a zone.
	until []uint64
	sizes []int
	all   Picker
	_     cacheLinePad
	// draw walks the golden-ratio (Weyl) sequence: equidistributed, so
	// each zone's share holds over any run of picks, for one atomic add
	// where a random draw costs a generator.
	draw atomic.Uint64
}

// newLocalityPicker builds the picker of groups (localityShares), each
// zone's with newPicker.
func newLocalityPicker(groups []zoneGroup, eligible []*Endpoint, newPicker func([]*Endpoint) Picker, rnd *splitmix) Picker {
	p := &localityPicker{}
	var total, cum float64
	for _, g := range groups {
		if g.share > 0 && len(g.eligible) > 0 {
			total += g.share
		}
	}
	for _, g := range groups {
		if g.share <= 0 || len(g.eligible) == 0 {
			continue
		}
		// Shares of groups left empty (none of theirs allowed) go to the
		// others in proportion.
		cum += g.share / total
		p.zones = append(p.zones, newPicker(g.eligible))
		p.sizes = append(p.sizes, len(g.eligible))
		p.until = append(p.until, uint64(min(cum, 1)*math.MaxUint64))
	}
	if len(p.zones) == 0 {
		return newPicker(eligible)
	}
	p.until[len(p.until)-1] = math.MaxUint64
	p.all = newPicker(eligible)
	p.draw.Store(rnd.next())
	return p
}

func (p *localityPicker) Pick(triedList []*Endpoint) *Endpoint {
	i := 0
	if len(p.zones) > 1 {
		// Counted without a branch on the draw, which no predictor can
		// guess: zones are few.
		x := p.draw.Add(0x9e3779b97f4a7c15)
		for _, u := range p.until[:len(p.until)-1] {
			if x > u {
				i++
			}
		}
	}
	e := p.zones[i].Pick(triedList)
	if len(triedList) >= p.sizes[i] && tried(triedList, e) {
		return p.all.Pick(triedList) // the zone has nothing untried left
	}
	return e
}
