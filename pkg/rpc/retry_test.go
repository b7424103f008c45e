package rpc_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/pkg/demoserver"
	"github.com/peervault/pvlb/pkg/latency"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/policy"
	"github.com/peervault/pvlb/pkg/rpc"
	"github.com/peervault/pvlb/pkg/statuscode"
	pb "github.com/peervault/pvlb/proto/peervault/v1"
)

// retryClient balances round robin over servers with the retry policy
// given.
func retryClient(t *testing.T, servers []*demoserver.Server, retry policy.Retry) (*rpc.LoadBalancedClient, pb.PeerVaultServiceClient) {
	t.Helper()
	ccfg := rpc.DefaultLoadBalancedClientConfig()
	ccfg.Retry = retry
	client := roundRobinClient(t, servers, ccfg)
	return client, pb.NewPeerVaultServiceClient(client)
}

// roundRobinClient balances round robin over servers with the client
// config given.
func roundRobinClient(t *testing.T, servers []*demoserver.Server, ccfg *rpc.LoadBalancedClientConfig) *rpc.LoadBalancedClient {
	t.Helper()
	cfg := lb.DefaultConfig()
	cfg.Service = "peervault"
	balancer, err := lb.New(cfg, nil, lb.WithSeed(1))
	if err != nil {
		t.Fatal(err)
	}
	testtools.AddServers(t, balancer, servers)
	client := testtools.LoadBalancedClient(t, balancer, ccfg)
	return client
}

// call sends n calls from 8 callers and returns how many failed.
func call(t *testing.T, stub pb.PeerVaultServiceClient, n int) int {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed := 0
	next := make(chan struct{}, n)
	for range n {
		next <- struct{}{}
	}
	close(next)
	for range 8 {
		wg.Go(func() {
			for range next {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := stub.GetUserData(ctx, &pb.GetUserDataRequest{UserId: "u"})
				cancel()
				if err != nil {
					mu.Lock()
					failed++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return failed
}

// A retry storm, on real servers: one of three fails every call at once
// with UNAVAILABLE. Without a budget, every call that lands on it is
// retried (a third of all calls); with Finagle's budget, retries stay
// within 20% of the calls plus the 10-a-second reserve.
func TestRetryBudgetStopsARetryStorm(t *testing.T) {
	const calls = 3000
	retry := policy.Retry{MaxRetries: 3, FailoverTimeout: 10 * time.Second, RetryableCodes: policy.DefaultRetryableCodes}
	servers := func() []*demoserver.Server {
		return testtools.DemoServers(t, 3, demoserver.Config{}, demoserver.Config{}, demoserver.Config{ErrorRate: 1, ErrorCode: statuscode.Unavailable})
	}
	free, freeStub := retryClient(t, servers(), retry)
	start := time.Now()
	if failed := call(t, freeStub, calls); failed != 0 {
		t.Errorf("without a budget, %d calls failed; every one should be retried onto a healthy server", failed)
	}
	unbounded := free.GetStats()

	budget := lb.DefaultRetryBudget()
	retry.Budget = &budget
	budgeted, budgetStub := retryClient(t, servers(), retry)
	failed := call(t, budgetStub, calls)
	elapsed := time.Since(start)
	st := budgeted.GetStats()
	t.Logf("without a budget: %d retries of %d calls; with one: %d retries, %d refused, %d calls failed (%s)", unbounded.Retries, calls, st.Retries, st.RetriesRefused, failed, elapsed.Round(time.Millisecond))
	if unbounded.Retries < calls/3-30 {
		t.Errorf("without a budget: %d retries, want about a third of %d", unbounded.Retries, calls)
	}
	// 20% of the calls, the reserve of 10 a second over the 10 s TTL, and
	// a few that race for the last tokens.
	if limit := uint64(calls/5 + 100 + 8); st.Retries > limit {
		t.Errorf("with the budget: %d retries, over 20%% of %d calls plus the reserve (%d)", st.Retries, calls, limit)
	}
	if st.RetriesRefused == 0 || uint64(failed) != st.RetriesRefused {
		t.Errorf("%d refused, %d failed: each refusal is a call that failed with its last error", st.RetriesRefused, failed)
	}
}

// A per-try timeout moves calls on from a hung server: 32 callers, one
// of three servers answers after 5 s; with a 100 ms per-try timeout no
// call waits on it for longer, and every call succeeds elsewhere.
func TestPerTryTimeoutMovesOnFromAHungServer(t *testing.T) {
	hung := latency.Model{Kind: latency.Fixed, A: 5 * time.Second}
	servers := testtools.DemoServers(t, 3, demoserver.Config{}, demoserver.Config{}, demoserver.Config{Latency: &hung})
	retry := policy.DefaultRetry()
	retry.Delay, retry.PerTryTimeout = 0, 100*time.Millisecond
	client, stub := retryClient(t, servers, retry)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var slowest time.Duration
	failed := 0
	for range 32 {
		wg.Go(func() {
			for range 3 {
				start := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				report := &rpc.CallReport{}
				_, err := stub.GetUserData(ctx, &pb.GetUserDataRequest{UserId: "u"}, report)
				cancel()
				mu.Lock()
				slowest = max(slowest, time.Since(start))
				if err != nil {
					failed++
					t.Errorf("call failed: %v (%+v)", err, report)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	st := client.GetStats()
	t.Logf("slowest of 96 calls: %s; %d retries", slowest.Round(time.Millisecond), st.Retries)
	if slowest > time.Second {
		t.Errorf("a call took %s: the per-try timeout (100ms) should have moved it on", slowest)
	}
	if st.Retries == 0 {
		t.Error("no call was retried off the hung server")
	}
	for _, s := range st.LoadBalancer.Servers {
		if s.ID == "server3" && s.Failures == 0 {
			t.Error("the hung server's timed-out attempts are not counted as its failures")
		}
	}
}

// A call's deadline bounds it whatever max_retries says: servers that fail
// after 60 ms, 10 retries, a 100 ms deadline.
func TestRetriesStayWithinTheDeadline(t *testing.T) {
	slowFail := latency.Model{Kind: latency.Fixed, A: 60 * time.Millisecond}
	cfg := demoserver.Config{Latency: &slowFail, ErrorRate: 1, ErrorCode: statuscode.Unavailable}
	retry := policy.Retry{MaxRetries: 10, FailoverTimeout: time.Minute, RetryableCodes: policy.DefaultRetryableCodes}
	_, stub := retryClient(t, testtools.DemoServers(t, 3, cfg, cfg, cfg), retry)
	for range 5 {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_, err := stub.GetUserData(ctx, &pb.GetUserDataRequest{UserId: "u"})
		cancel()
		// The deadline plus scheduling noise on two shared cores, well
		// under the 60 ms a further attempt would add.
		if took := time.Since(start); took > 200*time.Millisecond {
			t.Errorf("a call with a 100ms deadline took %s", took)
		}
		if code := status.Code(err); code != codes.DeadlineExceeded && code != codes.Unavailable {
			t.Errorf("error %v", err)
		}
	}
}

// The server's pushback is honoured: a wait it asks for comes before the
// retry, and a negative one stops retries.
func TestServerPushback(t *testing.T) {
	retry := policy.Retry{MaxRetries: 1, FailoverTimeout: time.Minute, RetryableCodes: policy.DefaultRetryableCodes}
	wait := demoserver.Config{ErrorRate: 1, ErrorCode: statuscode.Unavailable, Pushback: "300"}
	_, stub := retryClient(t, testtools.DemoServers(t, 1, wait), retry)
	start := time.Now()
	report := &rpc.CallReport{}
	_, err := stub.GetUserData(context.Background(), &pb.GetUserDataRequest{UserId: "u"}, report)
	if took := time.Since(start); err == nil || len(report.Attempts) != 2 || took < 300*time.Millisecond {
		t.Errorf("pushback 300ms: %d attempts in %s (%v); want 2, at least 300ms apart", len(report.Attempts), took, err)
	}
	stop := demoserver.Config{ErrorRate: 1, ErrorCode: statuscode.Unavailable, Pushback: "-1"}
	_, stub = retryClient(t, testtools.DemoServers(t, 1, stop), retry)
	report = &rpc.CallReport{}
	_, err = stub.GetUserData(context.Background(), &pb.GetUserDataRequest{UserId: "u"}, report)
	if err == nil || len(report.Attempts) != 1 || !strings.Contains(report.NotRetried, "asked not to retry") {
		t.Errorf("pushback -1: %d attempts, %q; want 1, not retried at the server's word", len(report.Attempts), report.NotRetried)
	}
}
