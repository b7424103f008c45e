package lb

import (
	"fmt"
	"math/rand/v2"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// SubsetConfig is a service's `subset` block: each client balances over,
// connects to and checks only a subset of the service's endpoints, so that
// a fleet of clients does not open clients × endpoints connections.
//
// Clients are taken in rounds of as many as there are subsets, each round
// splitting the endpoints between its clients: an endpoint's place in a
// round is rendezvous hashing of its id (jump consistent hash of the
// round's hash into ⌈endpoints ÷ size⌉ slots), and a client takes the slot
// its ClientIndex names. So every endpoint is in exactly one subset per
// round: clients spread evenly over endpoints (gRFC A68's random subsets
// leave some endpoints with none); an endpoint's slot depends on its id
// alone, so when endpoints come and go only the subsets that hold them
// change, until their number crosses a multiple of Size. A subset holds
// Size endpoints on average, more or fewer by chance (about √Size).
type SubsetConfig struct {
	// Size is the number of endpoints a client's subset holds on average
	// (A68's subset_size).
	Size int `json:"size"`
	// ClientIndex places the client in the fleet: 0, 1, 2… across the
	// clients (a StatefulSet's ordinal, say) spreads them evenly; nil
	// draws one at random, as A68's per-client random seed does.
	ClientIndex *int `json:"client_index,omitempty"`
}

func (c *SubsetConfig) validate() error {
	switch {
	case c.Size < 1 || c.Size > MaxLimit:
		return fmt.Errorf("subset: size must be from 1 to %d, not %d", MaxLimit, c.Size)
	case c.ClientIndex != nil && (*c.ClientIndex < 0 || *c.ClientIndex > 1<<30):
		return fmt.Errorf("subset: client_index must be from 0 to %d, not %d", 1<<30, *c.ClientIndex)
	}
	return nil
}

// subsetIndex is the client's index for c: its own, else a random one
// drawn once per balancer (from seed when it is set).
func subsetIndex(c *SubsetConfig, seed uint64) int {
	if c.ClientIndex != nil {
		return *c.ClientIndex
	}
	if seed != 0 {
		return int(rand.New(rand.NewPCG(seed, seed^0x5b5e7)).IntN(1 << 30))
	}
	return rand.IntN(1 << 30)
}

// chooseSubset returns the specs of the subset client index takes, in
// their order.
func chooseSubset(specs []EndpointSpec, size, index int) []EndpointSpec {
	if len(specs) <= size {
		return specs
	}
	slots := (len(specs) + size - 1) / size
	round, slot := index/slots, index%slots
	seed := xxhash.Sum64String("pvlb-subset-round-" + strconv.Itoa(round))
	out := make([]EndpointSpec, 0, size+size/2)
	best, bestScore := -1, uint64(0)
	for i, spec := range specs {
		key := mix(xxhash.Sum64String(spec.ID) ^ seed)
		if jumpHash(key, slots) == slot {
			out = append(out, spec)
		}
		if score := mix(key ^ uint64(slot)); best < 0 || score > bestScore {
			best, bestScore = i, score
		}
	}
	if len(out) == 0 {
		// A slot chance left empty (few endpoints, a small size): the
		// endpoint that ranks first for it, rather than none.
		out = append(out, specs[best])
	}
	return out
}

// mix is SplitMix64's finalizer: the rounds' keys of one id unrelated.
func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// jumpHash is Lamping and Veach's jump consistent hash: key's bucket of n,
// which moves only to the new bucket when n grows by one.
func jumpHash(key uint64, n int) int {
	var b, j int64 = -1, 0
	for j < int64(n) {
		b = j
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return int(b)
}
