package grpcpolicy

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/balancer"

	"github.com/peervault/pvlb/pkg/lb"
)

// grpcRoundRobinPicker is a copy of grpc-go's round_robin picker
// (endpointsharding's pickerWithChildStates over pick_first children, each
// of which returns its one READY subchannel), so that pvlb's picks are
// measured beside it in the same run.
type grpcRoundRobinPicker struct {
	pickers []balancer.Picker
	next    uint32
}

func (p *grpcRoundRobinPicker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	nextIndex := atomic.AddUint32(&p.next, 1)
	picker := p.pickers[nextIndex%uint32(len(p.pickers))]
	return picker.Pick(info)
}

// readyPicker is pick_first's picker for a READY subchannel.
type readyPicker struct{ result balancer.PickResult }

func (p *readyPicker) Pick(balancer.PickInfo) (balancer.PickResult, error) { return p.result, nil }

type fakeSubConn struct{ balancer.SubConn }

// BenchmarkPickAndDone measures one pick and the report of its outcome, the
// work a balancer does per call, serially and on every core: grpc-go's
// round_robin picker (whose Done is nil), pvlb's core (lb.Pick and
// lb.Done), and pvlb's grpc-go picker (Pick, then the Done callback, which
// reports latency and outcome to the core).
func BenchmarkPickAndDone(b *testing.B) {
	for _, n := range []int{3, 1000} {
		grpcRR := &grpcRoundRobinPicker{}
		for range n {
			grpcRR.pickers = append(grpcRR.pickers, &readyPicker{balancer.PickResult{SubConn: fakeSubConn{}}})
		}
		core := newBenchBalancer(b, lb.RoundRobin, n)
		pvlbPicker := readyPickerOver(core, core.Endpoints())
		info := balancer.PickInfo{Ctx: context.Background()}
		paths := []struct {
			name string
			call func()
		}{
			{"grpc-go_round_robin", func() {
				r, _ := grpcRR.Pick(info)
				if r.Done != nil {
					r.Done(balancer.DoneInfo{})
				}
			}},
			{"pvlb_core_round_robin", func() {
				e, _ := core.Pick(info.Ctx)
				core.Done(e, time.Millisecond, lb.Success)
			}},
			{"pvlb_grpc_picker_round_robin", func() {
				r, _ := pvlbPicker.Pick(info)
				r.Done(balancer.DoneInfo{})
			}},
		}
		for _, p := range paths {
			b.Run(fmt.Sprintf("%s/n=%d/serial", p.name, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					p.call()
				}
			})
			b.Run(fmt.Sprintf("%s/n=%d/parallel", p.name, n), func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						p.call()
					}
				})
			})
		}
	}
}

// BenchmarkPickHalfReady measures a pick and its Done by pvlb's grpc-go
// picker when half of 1,000 endpoints have no ready connection: the
// picker's subset holds the ready half, so the cost does not grow with the
// endpoints left out.
func BenchmarkPickHalfReady(b *testing.B) {
	core := newBenchBalancer(b, lb.RoundRobin, 1000)
	all := core.Endpoints()
	p := readyPickerOver(core, all[:500])
	info := balancer.PickInfo{Ctx: context.Background()}
	if _, err := p.Pick(info); err != nil { // builds the subset's picker
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		r, err := p.Pick(info)
		if err != nil {
			b.Fatal(err)
		}
		r.Done(balancer.DoneInfo{})
	}
}

// readyPickerOver is the picker the balancer publishes when the
// connections of ready, and only those, are READY.
func readyPickerOver(core *lb.LoadBalancer, ready []*lb.Endpoint) *grpcPicker {
	p := &grpcPicker{balancer: core, ready: map[*lb.Endpoint]*subConn{}, subset: core.NewSubset()}
	for _, e := range ready {
		p.ready[e] = &subConn{sc: fakeSubConn{}}
	}
	p.subset.Allow(ready)
	return p
}

func newBenchBalancer(b *testing.B, kind string, n int) *lb.LoadBalancer {
	core, err := lb.New(lb.Config{Service: "bench", Strategy: lb.StrategyConfig{Kind: kind}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		if err := core.AddServer(fmt.Sprintf("s%d", i), "127.0.0.1", 1+i, 1); err != nil {
			b.Fatal(err)
		}
	}
	return core
}
