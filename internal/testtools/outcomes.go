package testtools

import (
	"time"

	"github.com/peervault/pvlb/pkg/demoserver"
	"github.com/peervault/pvlb/pkg/latency"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/statuscode"
)

// SlowLatency is how long OutcomeServers' slow server takes to answer.
const SlowLatency = 40 * time.Millisecond

// OutcomeServers runs three demo servers for outcome tests: server1 answers
// at once, server2 fails every call with code, server3 answers after
// SlowLatency.
func OutcomeServers(t TB, code statuscode.Code) []*demoserver.Server {
	slow := latency.Model{Kind: latency.Fixed, A: SlowLatency}
	return DemoServers(t, 3,
		demoserver.Config{},
		demoserver.Config{ErrorRate: 1, ErrorCode: code},
		demoserver.Config{Latency: &slow})
}

// CheckOutcomes checks what the balancer learnt from calls to
// OutcomeServers: successes on server1 and server3 only, failures on server2
// only, server3's latency average at SlowLatency or more and server1's well
// under it, neutral results as many as want, and nothing left in flight.
func CheckOutcomes(t TB, balancer *lb.LoadBalancer, neutral uint64) {
	t.Helper()
	stats := map[string]lb.EndpointStats{}
	var totalNeutral uint64
	for _, s := range balancer.GetServerStats().Servers {
		stats[s.ID] = s
		totalNeutral += s.Neutral
		if s.ActiveConnections != 0 {
			t.Fatalf("%s: %d calls still in flight after every call ended", s.ID, s.ActiveConnections)
		}
	}
	s1, s2, s3 := stats["server1"], stats["server2"], stats["server3"]
	switch {
	case s1.Successes == 0 || s1.Failures != 0:
		t.Fatalf("server1 (healthy) outcomes %+v", s1.OutcomeCounts)
	case s2.Failures == 0 || s2.Successes != 0:
		t.Fatalf("server2 (failing) outcomes %+v", s2.OutcomeCounts)
	case s3.Successes == 0 || s3.Failures != 0:
		t.Fatalf("server3 (slow) outcomes %+v", s3.OutcomeCounts)
	case s3.LatencyEWMA < SlowLatency:
		t.Fatalf("server3 latency average %v, want at least %v", s3.LatencyEWMA, SlowLatency)
	case s1.LatencyEWMA >= SlowLatency/2:
		t.Fatalf("server1 latency average %v, want well under %v", s1.LatencyEWMA, SlowLatency)
	case totalNeutral != neutral:
		t.Fatalf("%d neutral outcomes, want %d", totalNeutral, neutral)
	}
}
