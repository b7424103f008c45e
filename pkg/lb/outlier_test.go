package lb

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

func newOutlierLB(t *testing.T, clock *fakeClock, od OutlierDetection, n int) (*LoadBalancer, *[]Event) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.OutlierDetection = &od
	var events []Event
	lb, err := New(cfg, nil, WithClock(clock.now), WithSeed(5), WithEvents(func(e Event) { events = append(events, e) }))
	must(t, err)
	for i := range n {
		must(t, lb.AddServer(fmt.Sprintf("s%d", i+1), "h", 1+i, 1))
	}
	return lb, &events
}

// call sends one call to whatever the balancer picks; s1 fails.
func call(t *testing.T, lb *LoadBalancer, failing string) *Endpoint {
	t.Helper()
	e, err := lb.Pick(context.Background())
	must(t, err)
	outcome := Success
	if e.ID == failing {
		outcome = Failure
	}
	lb.Done(e, time.Millisecond, outcome)
	return e
}

func TestConsecutiveFailuresEjectUntilTheEjectionTimeEnds(t *testing.T) {
	clock := &fakeClock{t: time.Unix(0, int64(time.Hour))}
	lb, events := newOutlierLB(t, clock, DefaultOutlierDetection(), 3)
	for range 15 { // round robin: five calls reach s1, all failing
		call(t, lb, "s1")
	}
	s1, _ := lb.Endpoint("s1")
	if !s1.Ejected() || len(*events) != 1 || !strings.Contains((*events)[0].What, "5 consecutive failures") {
		t.Fatalf("after 5 failures: ejected %v, events %v", s1.Ejected(), *events)
	}
	for range 30 {
		if e := call(t, lb, "s1"); e == s1 {
			t.Fatal("an ejected endpoint was picked")
		}
	}
	// max_ejection_percent 10 of 3: one may go, a second may not.
	s2, _ := lb.Endpoint("s2")
	for range 10 {
		e, _ := lb.Pick(context.Background())
		lb.Done(e, time.Millisecond, Failure)
	}
	if s2.Ejected() {
		t.Fatal("a second endpoint was ejected past max_ejection_percent")
	}
	// base_ejection_time later, the next interval's end returns it.
	clock.advance(30 * time.Second)
	call(t, lb, "")
	if s1.Ejected() || !strings.Contains((*events)[len(*events)-1].What, "returns") {
		t.Fatalf("s1 still out after its 30s: events %v", *events)
	}
	if st := lb.GetServerStats(); st.Servers[0].Ejections != 1 {
		t.Errorf("stats %+v", st.Servers[0])
	}
}

func TestFailurePercentageAndSuccessRateEject(t *testing.T) {
	for _, algo := range []string{"failure_percentage", "success_rate"} {
		clock := &fakeClock{t: time.Unix(0, int64(time.Hour))}
		od := DefaultOutlierDetection()
		od.ConsecutiveFailures = 0
		od.MaxEjectionPercent = 50
		if algo == "failure_percentage" {
			fp := DefaultFailurePercentage()
			od.FailurePercentage = &fp
		} else {
			sr := DefaultSuccessRate()
			od.SuccessRate = &sr
		}
		lb, events := newOutlierLB(t, clock, od, 6)
		// s1 fails nine calls in ten, over 200 calls each.
		for i := range 1200 {
			e, _ := lb.Pick(context.Background())
			outcome := Success
			if e.ID == "s1" && i%10 != 0 {
				outcome = Failure
			}
			lb.Done(e, time.Millisecond, outcome)
		}
		s1, _ := lb.Endpoint("s1")
		if s1.Ejected() {
			t.Fatalf("%s: ejected before the interval ended", algo)
		}
		clock.advance(10 * time.Second)
		call(t, lb, "")
		if !s1.Ejected() || len(*events) != 1 {
			t.Fatalf("%s: after an interval with 90%% failures: ejected %v, events %v", algo, s1.Ejected(), *events)
		}
		for _, e := range lb.Endpoints() {
			if e != s1 && e.Ejected() {
				t.Fatalf("%s: healthy %s ejected", algo, e.ID)
			}
		}
	}
}

// A second ejection soon after the first lasts twice as long.
func TestEjectionTimeGrowsWithEachEjection(t *testing.T) {
	clock := &fakeClock{t: time.Unix(0, int64(time.Hour))}
	lb, events := newOutlierLB(t, clock, DefaultOutlierDetection(), 2)
	s1, _ := lb.Endpoint("s1")
	failS1 := func() {
		for !s1.Ejected() {
			call(t, lb, "s1")
		}
	}
	failS1()
	clock.advance(30 * time.Second)
	call(t, lb, "")
	failS1()
	if last := (*events)[len(*events)-1].What; !strings.Contains(last, "ejected for 1m0s") {
		t.Fatalf("second ejection: %q, want 1m0s", last)
	}
}
