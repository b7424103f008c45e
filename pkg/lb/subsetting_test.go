package lb

import (
	"fmt"
	"slices"
	"testing"
)

func fleetSpecs(n int) []EndpointSpec {
	specs := make([]EndpointSpec, n)
	for i := range specs {
		specs[i] = EndpointSpec{ID: fmt.Sprintf("10.%d.%d.%d:50051", i>>16, (i>>8)&255, i&255), Host: "10.0.0.1", Port: 50051, Weight: 1}
	}
	return specs
}

func idsOf(specs []EndpointSpec) []string {
	ids := make([]string, len(specs))
	for i, s := range specs {
		ids[i] = s.ID
	}
	slices.Sort(ids)
	return ids
}

// 100 clients with indices 0..99, 1,000 endpoints, subsets of 20: every
// endpoint is in exactly two subsets (the mean); removing an endpoint
// changes only the subsets that held it, each losing just it; adding one
// changes only the subsets it joins.
func TestSubsetsSpreadEvenlyAndStay(t *testing.T) {
	const clients, endpoints, size = 100, 1000, 20
	specs := fleetSpecs(endpoints)
	subsets := make([][]string, clients)
	held := map[string]int{}
	smallest, largest := endpoints, 0
	for i := range subsets {
		subsets[i] = idsOf(chooseSubset(specs, size, i))
		smallest, largest = min(smallest, len(subsets[i])), max(largest, len(subsets[i]))
		for _, id := range subsets[i] {
			held[id]++
		}
	}
	mean := float64(clients*size) / endpoints
	for _, s := range specs {
		if n := held[s.ID]; float64(n) < 0.5*mean || float64(n) > 1.5*mean {
			t.Fatalf("%s is in %d subsets; want between %.1f and %.1f", s.ID, n, 0.5*mean, 1.5*mean)
		}
	}
	t.Logf("every endpoint in %d–%d subsets (mean %.1f); subsets of %d–%d endpoints (size %d)", slices.Min(valuesOf(held)), slices.Max(valuesOf(held)), mean, smallest, largest, size)

	gone := specs[123].ID
	without := slices.Delete(slices.Clone(specs), 123, 124)
	for i := range subsets {
		after := idsOf(chooseSubset(without, size, i))
		want := slices.DeleteFunc(slices.Clone(subsets[i]), func(id string) bool { return id == gone })
		if !slices.Equal(after, want) {
			t.Fatalf("client %d: removing %s changed its subset from %v to %v", i, gone, subsets[i], after)
		}
	}
	added := append(slices.Clone(specs[:endpoints-1]), EndpointSpec{ID: "10.9.9.9:50051", Host: "10.9.9.9", Port: 50051, Weight: 1})
	for i := range subsets {
		before := idsOf(chooseSubset(specs[:endpoints-1], size, i))
		after := idsOf(chooseSubset(added, size, i))
		grown := slices.DeleteFunc(slices.Clone(after), func(id string) bool { return id == "10.9.9.9:50051" })
		if !slices.Equal(grown, before) {
			t.Fatalf("client %d: adding an endpoint changed its subset beyond the new one", i)
		}
	}
}

func valuesOf(m map[string]int) []int {
	out := make([]int, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// A balancer with a subset keeps only its subset of what discovery hands
// over; endpoints that stay in it stay the same endpoints; a subset block
// added or changed by Reconfigure chooses again from the last list.
func TestBalancerKeepsItsSubset(t *testing.T) {
	index := 7
	cfg := DefaultConfig()
	cfg.Service = "peervault"
	b, err := New(cfg, nil, WithSeed(1))
	must(t, err)
	specs := fleetSpecs(200)
	must(t, b.Sync(specs))
	if n := len(b.Endpoints()); n != 200 {
		t.Fatalf("%d endpoints without a subset", n)
	}
	cfg.Subset = &SubsetConfig{Size: 20, ClientIndex: &index}
	must(t, b.Reconfigure(cfg))
	want := idsOf(chooseSubset(specs, 20, index))
	var got []string
	for _, e := range b.Endpoints() {
		got = append(got, e.ID)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("subset %v, want %v", got, want)
	}
	kept, _ := b.Endpoint(want[1])
	gone := slices.IndexFunc(specs, func(s EndpointSpec) bool { return s.ID == want[0] })
	must(t, b.Sync(slices.Delete(slices.Clone(specs), gone, gone+1)))
	if again, _ := b.Endpoint(want[1]); again != kept || len(b.Endpoints()) != len(want)-1 {
		t.Fatalf("after removing %s: %d endpoints, %s replaced: %v", want[0], len(b.Endpoints()), want[1], again != kept)
	}
}

// Few endpoints and a small size can leave a slot empty by chance; the
// client still gets an endpoint.
func TestSubsetNeverEmpty(t *testing.T) {
	specs := fleetSpecs(3)
	for i := range 50 {
		if len(chooseSubset(specs, 1, i)) == 0 {
			t.Fatalf("client %d got no endpoint", i)
		}
	}
}

// BenchmarkChooseSubset: a client's subset of 10,000 endpoints.
func BenchmarkChooseSubset(b *testing.B) {
	specs := fleetSpecs(10_000)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		chooseSubset(specs, 20, i%1000)
	}
}
