package loadgen_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/loadgen"
	"github.com/peervault/pvlb/pkg/rpc"
	"github.com/peervault/pvlb/pkg/sim"
	pb "github.com/peervault/pvlb/proto/peervault/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// target is three demo servers behind a round-robin LoadBalancedClient,
// and a Call that asks them for user data.
func target(t *testing.T) (*lb.LoadBalancer, loadgen.Call, func() map[string]int64) {
	t.Helper()
	servers := testtools.DemoServers(t, 3)
	b, err := lb.New(lb.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	testtools.AddServers(t, b, servers)
	client := testtools.LoadBalancedClient(t, b, nil)
	stub := pb.NewPeerVaultServiceClient(client)
	call := func(ctx context.Context, _ int) ([]sim.MeasuredAttempt, error) {
		report := &rpc.CallReport{}
		_, err := stub.GetUserData(ctx, &pb.GetUserDataRequest{UserId: "u"}, grpc.CallOption(report))
		var out []sim.MeasuredAttempt
		for _, a := range report.Attempts {
			out = append(out, sim.MeasuredAttempt{Server: a.Server, Address: a.Address, Took: a.Latency, Failed: a.Err != nil})
		}
		return out, err
	}
	served := func() map[string]int64 {
		out := map[string]int64{}
		for _, s := range servers {
			out[s.Name()] = s.Calls()
		}
		return out
	}
	return b, call, served
}

// An open loop at 400 calls a second for 2 seconds makes 800 calls within
// 2%, and the report's counts per server are the servers' own.
func TestOpenLoopKeepsItsRate(t *testing.T) {
	b, call, served := target(t)
	m := sim.NewMeasurement("peervault", lb.RoundRobin, "", b.Endpoints())
	r, err := loadgen.Run(context.Background(), loadgen.Config{RPS: 400, Duration: 2 * time.Second, Call: call, Timeout: 5 * time.Second}, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d calls in %v, %d failed, p50 %v p99 %v", r.Requests, time.Duration(r.SimulatedTime), r.Failed, time.Duration(r.Latency.P50), time.Duration(r.Latency.P99))
	if math.Abs(float64(r.Requests)-800) > 16 {
		t.Errorf("%d calls, want 800 within 2%%", r.Requests)
	}
	if r.Failed != 0 {
		t.Errorf("%d calls failed", r.Failed)
	}
	own := served()
	for _, s := range r.Servers {
		if int64(s.Requests) != own[s.ID] {
			t.Errorf("%s: the report counts %d attempts, the server answered %d", s.ID, s.Requests, own[s.ID])
		}
	}
}

// A closed loop of 4 for a total of 300 makes exactly 300 calls, a third
// on each server.
func TestClosedLoopMakesItsTotal(t *testing.T) {
	b, call, _ := target(t)
	m := sim.NewMeasurement("peervault", lb.RoundRobin, "", b.Endpoints())
	r, err := loadgen.Run(context.Background(), loadgen.Config{Concurrency: 4, Total: 300, Call: call}, m)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 300 || r.Succeeded != 300 {
		t.Fatalf("%d calls, %d succeeded; want 300", r.Requests, r.Succeeded)
	}
	for _, s := range r.Servers {
		if s.Requests != 100 {
			t.Errorf("%s took %d of 300 round-robin calls", s.ID, s.Requests)
		}
	}
}

// Cancelling the run stops it at once with what was measured, leaving out
// calls it cut short; failures are counted as failed calls.
func TestRunStopsWhenCancelledAndCountsFailures(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	m := sim.NewMeasurement("peervault", lb.RoundRobin, "", nil)
	calls := 0
	call := func(ctx context.Context, seq int) ([]sim.MeasuredAttempt, error) {
		calls++
		if seq == 50 {
			cancel()
		}
		return []sim.MeasuredAttempt{{Server: "s1", Failed: seq%2 == 0}}, status.Error(7, "denied")
	}
	r, err := loadgen.Run(ctx, loadgen.Config{Concurrency: 1, Duration: time.Hour, Call: call}, m)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err %v, want Canceled", err)
	}
	// The call the cancellation cut short is not a result.
	if r.Requests != calls-1 || r.Failed != r.Requests || calls > 52 {
		t.Errorf("%d calls made, the report has %d, %d failed", calls, r.Requests, r.Failed)
	}
}

func TestConfigIsChecked(t *testing.T) {
	call := func(context.Context, int) ([]sim.MeasuredAttempt, error) { return nil, nil }
	for _, c := range []loadgen.Config{
		{Call: call, Total: 1},
		{Call: call, RPS: 10, Concurrency: 2, Total: 1},
		{Call: call, RPS: loadgen.MaxRPS + 1, Total: 1},
		{Call: call, Concurrency: loadgen.MaxConcurrency + 1, Total: 1},
		{Call: call, RPS: 10},
		{Call: call, RPS: 10, Duration: 25 * time.Hour},
		{Call: call, RPS: 10, Total: loadgen.MaxTotal + 1},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
