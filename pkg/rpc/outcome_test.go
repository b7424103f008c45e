package rpc_test

import (
	"context"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/rpc"
	"github.com/peervault/pvlb/pkg/statuscode"
	pb "github.com/peervault/pvlb/proto/peervault/v1"
)

// The client reports every attempt to the core: unary calls, streams and
// retries, classed as the service's outcomes block says.
func TestClientReportsEveryOutcome(t *testing.T) {
	f := newFixture(t, config(lb.RoundRobin), testtools.OutcomeServers(t, statuscode.Internal), nil, 0)
	ctx := context.Background()
	var failed int
	for i := range 30 {
		_, err := f.stub.GetUserData(ctx, &pb.GetUserDataRequest{UserId: "u"})
		if status.Code(err) == codes.Internal {
			failed++
		} else if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if failed != 10 {
		t.Fatalf("%d of 30 calls failed, want server2's 10 (INTERNAL is not retried)", failed)
	}
	// The caller's own mistake says nothing about the endpoint...
	for range 3 {
		if _, err := f.stub.GetUserData(ctx, &pb.GetUserDataRequest{}); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("empty user id: %v", err)
		}
	}
	// ...nor does a call its caller cancelled.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := f.stub.GetUserData(cancelled, &pb.GetUserDataRequest{UserId: "u"}); status.Code(err) != codes.Canceled {
		t.Fatalf("cancelled call: %v", err)
	}
	// Streams report when they end: read to the end, or failed.
	for range 3 {
		stream, err := f.stub.WatchUserEvents(ctx, &pb.WatchUserEventsRequest{UserId: "u", Count: 2})
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err = stream.Recv(); err != nil {
				break
			}
		}
		if err != io.EOF && status.Code(err) != codes.Internal {
			t.Fatalf("stream: %v", err)
		}
	}
	testtools.CheckOutcomes(t, f.balancer, 4)
}

// Each attempt of a retried call reports its own outcome.
func TestRetriedAttemptsReportEach(t *testing.T) {
	f := newFixture(t, config(lb.RoundRobin), testtools.OutcomeServers(t, statuscode.Unavailable), nil, 0)
	report := &rpc.CallReport{}
	for i := range 30 {
		if _, err := f.stub.GetUserData(context.Background(), &pb.GetUserDataRequest{UserId: "u"}, report); err != nil {
			t.Fatalf("call %d: %v (UNAVAILABLE is retried elsewhere)", i, err)
		}
	}
	stats := f.balancer.GetServerStats()
	var successes, failures uint64
	for _, s := range stats.Servers {
		successes += s.Successes
		failures += s.Failures
	}
	if successes != 30 || failures != uint64(len(report.Attempts)-30) || failures == 0 {
		t.Fatalf("%d successes and %d failures over %d attempts; want 30 and the rest", successes, failures, len(report.Attempts))
	}
	testtools.CheckOutcomes(t, f.balancer, 0)
}

// Health checks show in the endpoint's counters without counting as calls.
func TestHealthChecksAreCounted(t *testing.T) {
	f := newFixture(t, config(lb.RoundRobin), testtools.DemoServers(t, 2), nil, 0)
	health := rpc.NewHealthChecker(time.Hour, time.Second, nil, rpc.WithManualChecks())
	if err := health.Start(f.balancer, f.pool); err != nil {
		t.Fatal(err)
	}
	defer health.Close()
	health.ForceHealthCheckAll(context.Background())
	health.ForceHealthCheckAll(context.Background())
	for _, s := range f.balancer.GetServerStats().Servers {
		if s.ChecksPassed != 2 || s.Successes != 0 || s.TotalRequests != 0 {
			t.Errorf("%s: %+v after two passing checks and no calls", s.ID, s)
		}
	}
}
