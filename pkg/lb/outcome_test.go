package lb

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peervault/pvlb/pkg/statuscode"
)

func TestDoneCountsOutcomesAndLatency(t *testing.T) {
	lb := newTestLB(t, withStrategy(RoundRobin), 1)
	e, _ := lb.Endpoint("s1")
	for i := range 40 {
		p, err := lb.Pick(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case i < 30:
			lb.Done(p, 20*time.Millisecond, Success)
		case i < 35:
			lb.Done(p, 100*time.Millisecond, Failure)
		default:
			lb.Done(p, time.Millisecond, Neutral)
		}
	}
	held, _ := lb.Pick(context.Background())
	got := e.Outcomes()
	if got.Successes != 30 || got.Failures != 5 || got.Neutral != 5 {
		t.Fatalf("outcomes %+v, want 30 successes, 5 failures, 5 neutral", got)
	}
	// Five failures at 100ms after thirty 20ms calls pull the average up,
	// but it stays between the two; neutral calls do not move it.
	if got.LatencyEWMA <= 20*time.Millisecond || got.LatencyEWMA >= 100*time.Millisecond {
		t.Errorf("latency EWMA %v, want between 20ms and 100ms", got.LatencyEWMA)
	}
	if e.InFlight() != 1 || e.Requests() != 41 {
		t.Errorf("in flight %d, requests %d; want 1 and 41", e.InFlight(), e.Requests())
	}
	lb.Release(held)
	st := lb.GetServerStats().Servers[0]
	if st.Successes != 30 || st.Failures != 5 || st.Neutral != 6 || st.ActiveConnections != 0 || st.LatencyEWMAMS <= 20 {
		t.Errorf("stats %+v", st)
	}
}

// observingStrategy is round robin that remembers the outcomes it is told.
type observingStrategy struct {
	Strategy
	mu   sync.Mutex
	seen []Outcome
}

func (s *observingStrategy) ObserveOutcome(_ *Endpoint, _ time.Duration, o Outcome) {
	s.mu.Lock()
	s.seen = append(s.seen, o)
	s.mu.Unlock()
}

func TestStrategiesThatObserveAreToldEveryOutcome(t *testing.T) {
	rr, err := NewStrategy(StrategyConfig{Kind: RoundRobin}, StrategyOptions{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	obs := &observingStrategy{Strategy: rr}
	lb, err := New(Config{Service: "svc"}, nil, WithStrategy(obs))
	if err != nil {
		t.Fatal(err)
	}
	must(t, lb.AddServer("a", "h", 1, 1))
	for _, o := range []Outcome{Success, Failure, Neutral} {
		e, err := lb.Pick(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		lb.Done(e, time.Millisecond, o)
	}
	if len(obs.seen) != 3 || obs.seen[0] != Success || obs.seen[1] != Failure || obs.seen[2] != Neutral {
		t.Fatalf("observer saw %v", obs.seen)
	}
}

func TestClassify(t *testing.T) {
	def := OutcomeConfig{}
	for code, want := range map[statuscode.Code]Outcome{
		statuscode.OK: Success, statuscode.Unavailable: Failure, statuscode.DeadlineExceeded: Failure,
		statuscode.Internal: Failure, statuscode.Unknown: Failure, statuscode.DataLoss: Failure,
		statuscode.InvalidArgument: Neutral, statuscode.Canceled: Neutral, statuscode.ResourceExhausted: Neutral,
	} {
		if got := def.Classify(code, false); got != want {
			t.Errorf("default classification of %v = %v, want %v", code, got, want)
		}
	}
	if got := def.Classify(statuscode.Unavailable, true); got != Neutral {
		t.Errorf("a call the caller cancelled is %v, want neutral", got)
	}
	custom := OutcomeConfig{FailureCodes: statuscode.SetOf(statuscode.ResourceExhausted)}
	if custom.Classify(statuscode.ResourceExhausted, false) != Failure || custom.Classify(statuscode.Internal, false) != Neutral {
		t.Error("configured failure codes are not what counts")
	}
}

func TestPickAndDoneAllocateNothing(t *testing.T) {
	for _, kind := range StrategyKinds() {
		lb := newTestLB(t, withStrategy(kind), 3, 2, 1)
		ctx := context.Background()
		allocs := testing.AllocsPerRun(1000, func() {
			e, _ := lb.Pick(ctx)
			lb.Done(e, time.Millisecond, Success)
		})
		if allocs != 0 {
			t.Errorf("%s: pick and done allocate %.1f times", kind, allocs)
		}
	}
}

// TestCoreImportsNoGRPC keeps the balancer core, and the leaf packages the
// configuration and providers share, free of gRPC, and the discovery
// providers free of the core.
func TestCoreImportsNoGRPC(t *testing.T) {
	deps := func(pkg string) []string {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	const module = "github.com/peervault/pvlb/"
	for _, pkg := range []string{"pkg/lb", "pkg/policy", "pkg/statuscode", "pkg/latency", "pkg/tlsfiles", "pkg/config"} {
		for _, d := range deps(module + pkg) {
			if strings.HasPrefix(d, "google.golang.org/grpc") {
				t.Errorf("%s depends on %s", pkg, d)
			}
		}
	}
	for _, pkg := range []string{"plugins/etcd", "plugins/consul", "plugins/kubernetes"} {
		for _, d := range deps(module + pkg) {
			if d == module+"pkg/lb" || d == module+"pkg/rpc" {
				t.Errorf("provider %s depends on %s", pkg, d)
			}
		}
	}
}

func TestSubsetSpreadsOverItsOwnEndpoints(t *testing.T) {
	for _, kind := range StrategyKinds() {
		lb := newTestLB(t, withStrategy(kind), 1, 1, 1, 1)
		s1, _ := lb.Endpoint("s1")
		s3, _ := lb.Endpoint("s3")
		s4, _ := lb.Endpoint("s4")
		sub := lb.NewSubset()
		if _, err := sub.Pick(context.Background(), nil); !errors.Is(err, ErrNoneAllowed) {
			t.Fatalf("%s: empty subset: %v", kind, err)
		}
		// s2 is left out: its share goes to the other three alike, not
		// to its neighbour in the rotation.
		sub.Allow([]*Endpoint{s1, s3, s4})
		got := map[string]int{}
		for range 3000 {
			e, err := sub.Pick(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			got[e.ID]++
			lb.Release(e)
		}
		if got["s2"] != 0 {
			t.Fatalf("%s: left-out s2 picked %d times", kind, got["s2"])
		}
		for _, id := range []string{"s1", "s3", "s4"} {
			if got[id] < 900 || got[id] > 1100 {
				t.Errorf("%s: %s got %d of 3000 picks, want about 1000: %v", kind, id, got[id], got)
			}
		}
		// The subset follows the balancer's health.
		must(t, lb.SetHealth("s3", HealthUnhealthy))
		for range 30 {
			e, _ := sub.Pick(context.Background(), nil)
			if e.ID == "s3" {
				t.Fatalf("%s: unhealthy s3 picked from the subset", kind)
			}
			lb.Release(e)
		}
		must(t, lb.SetHealth("s1", HealthUnhealthy))
		must(t, lb.SetHealth("s4", HealthUnhealthy))
		if _, err := sub.Pick(context.Background(), nil); !errors.Is(err, ErrNoneAllowed) {
			t.Fatalf("%s: only s2 eligible, outside the subset: %v", kind, err)
		}
		must(t, lb.SetHealth("s2", HealthUnhealthy))
		if _, err := sub.Pick(context.Background(), nil); !errors.Is(err, ErrNoHealthyServers) {
			t.Fatalf("%s: nothing eligible: %v", kind, err)
		}
	}
}

func TestSubsetKeepsStickySessionsInside(t *testing.T) {
	cfg := withStrategy(RoundRobin)
	cfg.StickySession = true
	lb := newTestLB(t, cfg, 1, 1)
	ctx := WithSession(context.Background(), "alice")
	first, _ := lb.Pick(ctx)
	lb.Release(first)
	other := lb.Endpoints()[0]
	if other == first {
		other = lb.Endpoints()[1]
	}
	sub := lb.NewSubset()
	sub.Allow([]*Endpoint{other})
	e, err := sub.Pick(ctx, nil)
	if err != nil || e != other {
		t.Fatalf("session bound to %s, subset holds only %s: picked %v, %v", first.ID, other.ID, e, err)
	}
	lb.Release(e)
}

func TestRampingPicksAllocateNothing(t *testing.T) {
	for _, kind := range []string{RoundRobin, Weighted, LeastConnections, PeakEWMA} {
		cfg := DefaultConfig()
		ss := DefaultSlowStart(time.Hour)
		cfg.Strategy = StrategyConfig{Kind: kind, SlowStart: &ss}
		lb, err := New(cfg, nil)
		must(t, err)
		must(t, lb.Sync([]EndpointSpec{{ID: "a", Host: "h", Port: 1, Weight: 1}}))
		must(t, lb.Sync([]EndpointSpec{{ID: "a", Host: "h", Port: 1, Weight: 1}, {ID: "b", Host: "h", Port: 2, Weight: 1}}))
		if b, _ := lb.Endpoint("b"); b.rampStart.Load() == 0 {
			t.Fatalf("%s: a joining endpoint is not warming", kind)
		}
		ctx := context.Background()
		allocs := testing.AllocsPerRun(1000, func() {
			e, _ := lb.Pick(ctx)
			lb.Done(e, time.Millisecond, Success)
		})
		if allocs != 0 {
			t.Errorf("%s: a pick while an endpoint warms allocates %.1f times", kind, allocs)
		}
	}
}
