package grpcpolicy_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/pkg/demoserver"
	"github.com/peervault/pvlb/pkg/latency"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/policy"
	"github.com/peervault/pvlb/pkg/rpc"
	"github.com/peervault/pvlb/pkg/statuscode"
	pb "github.com/peervault/pvlb/proto/peervault/v1"
)

// callsChannel is a pvlb:/// channel whose unary calls rpc.ChannelCalls
// runs with the retry policy and hedging given.
func callsChannel(t *testing.T, servers []*demoserver.Server, retry policy.Retry, hedging *policy.Hedging) (pb.PeerVaultServiceClient, *rpc.ChannelCalls) {
	t.Helper()
	cfg := lb.DefaultConfig()
	cfg.Service = "peervault"
	balancer, err := lb.New(cfg, nil, lb.WithSeed(3))
	if err != nil {
		t.Fatal(err)
	}
	testtools.AddServers(t, balancer, servers)
	calls, err := rpc.NewChannelCalls(retry, hedging, nil)
	if err != nil {
		t.Fatal(err)
	}
	cc := testtools.CallsChannel(t, balancer, calls)
	return pb.NewPeerVaultServiceClient(cc), calls
}

// On a channel, a retried call moves to another endpoint, and the budget
// bounds the retries: one of three servers fails every call.
func TestChannelCallsRetryElsewhereWithinTheBudget(t *testing.T) {
	failing := demoserver.Config{ErrorRate: 1, ErrorCode: statuscode.Unavailable}
	retry := policy.Retry{MaxRetries: 3, FailoverTimeout: 10 * time.Second, RetryableCodes: policy.DefaultRetryableCodes}
	stub, calls := callsChannel(t, testtools.DemoServers(t, 3, demoserver.Config{}, demoserver.Config{}, failing), retry, nil)
	for range 300 {
		report := &rpc.CallReport{}
		if _, err := stub.GetUserData(context.Background(), &pb.GetUserDataRequest{UserId: "u"}, report); err != nil {
			t.Fatalf("without a budget every call should be retried onto a healthy server: %v (%+v)", err, report)
		}
		if n := len(report.Attempts); n == 2 && report.Attempts[0].Server == report.Attempts[1].Server {
			t.Fatalf("the retry went back to %s", report.Attempts[0].Server)
		}
	}
	if st := calls.Stats(); st.Retries < 80 {
		t.Errorf("%d retries of 300 calls, want about 100", st.Retries)
	}

	budget := lb.DefaultRetryBudget()
	budget.MinRetriesPerSecond = 1
	retry.Budget = &budget
	stub, calls = callsChannel(t, testtools.DemoServers(t, 3, demoserver.Config{}, demoserver.Config{}, failing), retry, nil)
	for range 600 {
		_, _ = stub.GetUserData(context.Background(), &pb.GetUserDataRequest{UserId: "u"})
	}
	st := calls.Stats()
	t.Logf("with the budget: %+v", st)
	if st.Retries > 600/5+10+2 || st.RetriesRefused == 0 {
		t.Errorf("%d retries (%d refused) of 600 calls: want at most 20%% plus the reserve of 10", st.Retries, st.RetriesRefused)
	}
}

// A per-try timeout moves a channel's calls on from a hung server.
func TestChannelCallsPerTryTimeout(t *testing.T) {
	hung := latency.Model{Kind: latency.Fixed, A: 5 * time.Second}
	retry := policy.DefaultRetry()
	retry.Delay, retry.PerTryTimeout = 0, 100*time.Millisecond
	stub, _ := callsChannel(t, testtools.DemoServers(t, 3, demoserver.Config{}, demoserver.Config{}, demoserver.Config{Latency: &hung}), retry, nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var slowest time.Duration
	for range 32 {
		wg.Go(func() {
			start := time.Now()
			_, err := stub.GetUserData(context.Background(), &pb.GetUserDataRequest{UserId: "u"})
			mu.Lock()
			defer mu.Unlock()
			slowest = max(slowest, time.Since(start))
			if err != nil {
				t.Errorf("call failed: %v", err)
			}
		})
	}
	wg.Wait()
	if slowest > time.Second {
		t.Errorf("a call took %s: the per-try timeout (100ms) should have moved it on", slowest)
	}
}

// Hedging on a channel: a copy to another server after 20 ms, when the
// first server answers in 300 ms; the copy wins.
func TestChannelCallsHedge(t *testing.T) {
	slow := latency.Model{Kind: latency.Fixed, A: 300 * time.Millisecond}
	servers := testtools.DemoServers(t, 2, demoserver.Config{Latency: &slow}, demoserver.Config{})
	stub, calls := callsChannel(t, servers, policy.DefaultRetry(), &policy.Hedging{MaxAttempts: 2, Delay: 20 * time.Millisecond, Methods: []string{"GetUserData"}})
	for range 10 {
		start := time.Now()
		resp, err := stub.GetUserData(context.Background(), &pb.GetUserDataRequest{UserId: "u"})
		if err != nil || resp.GetUserId() != "u" {
			t.Fatalf("%v, %v", resp, err)
		}
		if took := time.Since(start); took > 200*time.Millisecond {
			t.Errorf("a hedged call took %s; the copy on the fast server should answer in about 20ms", took)
		}
	}
	if st := calls.Stats(); st.Hedges == 0 || st.HedgeWins == 0 {
		t.Errorf("stats %+v: want hedges, and hedges that won", st)
	}
}
