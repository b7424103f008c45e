package lb

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// Hashing tables for consistent hashing: grpc-go's ring (gRFC A42) and
// Envoy's Maglev table. Both map a 64-bit key hash to one of a set of
// members, each known by its hash key (an endpoint's address, as gRPC
// and Envoy hash it) and weight; a member's own entries do not depend on
// the others, so when one leaves, only its keys move.

// Ring sizes, as gRFC A42 and grpc-go have them.
const (
	DefaultMinRingSize = 1024
	DefaultMaxRingSize = 4096
	MaxRingSize        = 8 << 20
)

// DefaultMaglevTableSize is Envoy's Maglev table size, a prime.
const DefaultMaglevTableSize = 65537

// MaxMaglevTableSize is Envoy's bound on the table size.
const MaxMaglevTableSize = 5000011

// hashMember is one member of a hashing table: its hash key, weight and
// the index its owner knows it by.
type hashMember struct {
	key    string
	weight int
	index  int32
}

// hashTable is a ring or a Maglev table: a key hash names a position,
// whose owner takes the key; walking on from a position visits owners in
// proportion to their share, which is how a key whose owner may not take
// it finds the next one.
type hashTable struct {
	// hashes are the ring's entries, sorted; nil for Maglev, whose
	// position is the hash modulo the table size.
	hashes []uint64
	owners []int32 // member index at each position
}

// find returns the position of hash h: for a ring, the first entry at or
// after h, wrapping.
func (t *hashTable) find(h uint64) int {
	if t.hashes == nil {
		return int(h % uint64(len(t.owners)))
	}
	i, _ := slices.BinarySearch(t.hashes, h)
	if i == len(t.hashes) {
		i = 0
	}
	return i
}

// newHashRing builds the ring exactly as grpc-go's ring_hash does, so
// that the same members and key hash pick the same member: the ring is
// scaled so the lightest member has a whole number of entries, within
// [minSize, maxSize].
func newHashRing(members []hashMember, minSize, maxSize int) hashTable {
	sorted := slices.Clone(members)
	slices.SortFunc(sorted, byHashKey)
	var sum float64
	for _, m := range sorted {
		sum += float64(m.weight)
	}
	minWeight := 1.0
	for _, m := range sorted {
		minWeight = math.Min(minWeight, float64(m.weight)/sum)
	}
	scale := math.Min(math.Ceil(minWeight*float64(minSize))/minWeight, float64(maxSize))
	type entry struct {
		hash  uint64
		owner int32
	}
	entries := make([]entry, 0, int(math.Ceil(scale)))
	var current, target float64
	buf := make([]byte, 0, 64)
	for _, m := range sorted {
		target += scale * float64(m.weight) / sum
		for i := 0; current < target; i++ {
			buf = strconv.AppendInt(append(append(buf[:0], m.key...), '_'), int64(i), 10)
			entries = append(entries, entry{xxhash.Sum64(buf), m.index})
			current++
		}
	}
	slices.SortStableFunc(entries, func(a, b entry) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return 0
	})
	r := hashTable{hashes: make([]uint64, len(entries)), owners: make([]int32, len(entries))}
	for i, e := range entries {
		r.hashes[i], r.owners[i] = e.hash, e.owner
	}
	return r
}

// newMaglevTable builds Envoy's Maglev table of size slots (a prime):
// every member fills the slots of its own permutation of the table in
// turn, weighted, until all are taken; a key goes to the slot its hash
// names. Each member's permutation starts at xxHash64(key, seed 0) mod size and
// steps by xxHash64(key, seed 1) mod (size-1) + 1, as Envoy's; a member
// of weight w fills w/max(w) as many slots as the heaviest.
func newMaglevTable(members []hashMember, size int) (hashTable, error) {
	if !IsPrime(size) {
		return hashTable{}, fmt.Errorf("maglev table size %d is not a prime", size)
	}
	if len(members) == 0 {
		return hashTable{}, nil
	}
	sorted := slices.Clone(members)
	slices.SortFunc(sorted, byHashKey)
	skip := make([]uint64, len(sorted))
	// pos is each member's next slot in its permutation: offset + k×skip
	// mod size, stepped by addition rather than a division per probe.
	pos := make([]uint64, len(sorted))
	maxWeight := 0
	d := xxhash.NewWithSeed(1)
	for i, m := range sorted {
		pos[i] = xxhash.Sum64String(m.key) % uint64(size)
		d.ResetWithSeed(1)
		_, _ = d.WriteString(m.key)
		skip[i] = d.Sum64()%uint64(size-1) + 1
		maxWeight = max(maxWeight, m.weight)
	}
	slots := make([]int32, size)
	for i := range slots {
		slots[i] = -1
	}
	filled := 0
	placed := make([]int, len(sorted))
	targets := make([]float64, len(sorted))
	for filled < size {
		for i, m := range sorted {
			// A member places an entry each time its running share
			// passes a whole number: weight/maxWeight a round, so that
			// equal weights take turns, as in Maglev's paper.
			targets[i] += float64(m.weight) / float64(maxWeight)
			for float64(placed[i]) < math.Floor(targets[i]) && filled < size {
				for {
					c := pos[i]
					if pos[i] += skip[i]; pos[i] >= uint64(size) {
						pos[i] -= uint64(size)
					}
					if slots[c] < 0 {
						slots[c] = m.index
						filled++
						placed[i]++
						break
					}
				}
			}
		}
	}
	return hashTable{owners: slots}, nil
}

// IsPrime reports whether n is a prime, as a Maglev table's size must be.
func IsPrime(n int) bool {
	if n < 2 {
		return false
	}
	for d := 2; d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

func byHashKey(a, b hashMember) int { return cmp.Compare(a.key, b.key) }
