package rpc_test

import (
	"context"
	"encoding/json"
	"io"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/pkg/demoserver"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/rpc"
	pb "github.com/peervault/pvlb/proto/peervault/v1"
)

// A server-streaming call that fails before any response is reopened on
// another server and its request sent again.
func TestStreamRetriedBeforeAnyResponse(t *testing.T) {
	good, err := demoserver.Start("127.0.0.1:0", demoserver.Config{Name: "good"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Stop()
	refusing, err := demoserver.Start("127.0.0.1:0", demoserver.Config{Name: "refusing"}, nil, grpc.StreamInterceptor(
		func(any, grpc.ServerStream, *grpc.StreamServerInfo, grpc.StreamHandler) error {
			return status.Error(codes.Unavailable, "draining")
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer refusing.Stop()
	f := newFixture(t, config(lb.RoundRobin), []*demoserver.Server{good, refusing}, nil, 0)

	retried := 0
	for range 10 {
		report := &rpc.CallReport{}
		stream, err := f.stub.WatchUserEvents(context.Background(), &pb.WatchUserEventsRequest{UserId: "u1", Count: 3}, report)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for {
			ev, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("stream failed: %v (attempts %+v)", err, report.Attempts)
			}
			if ev.GetServer() != "good" || ev.GetUserId() != "u1" {
				t.Fatalf("event %v", ev)
			}
			n++
		}
		if n != 3 {
			t.Fatalf("%d events, want 3", n)
		}
		if len(report.Attempts) == 2 {
			retried++
			if report.Attempts[0].Server != "refusing" || status.Code(report.Attempts[0].Err) != codes.Unavailable {
				t.Fatalf("first attempt %+v", report.Attempts[0])
			}
		}
	}
	// Retries take picks too, so round robin sends most first attempts to
	// the refusing server; every one of them must have been saved.
	if retried == 0 {
		t.Fatal("no stream went to the refusing server first")
	}
	if n := f.balancer.GetServerStats().TotalConnections; n != 0 {
		t.Fatalf("%d picks still in flight", n)
	}
}

// Once a stream has delivered a message, a failure goes to the caller: the
// stream is never restarted midway.
func TestStreamNotRetriedAfterAResponse(t *testing.T) {
	servers := testtools.DemoServers(t, 2)
	f := newFixture(t, config(lb.RoundRobin), servers, nil, 0)
	report := &rpc.CallReport{}
	stream, err := f.stub.WatchUserEvents(context.Background(), &pb.WatchUserEventsRequest{UserId: "u1", Count: 1000, IntervalMs: 10}, report)
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		if s.Name() == first.GetServer() {
			s.Stop()
		}
	}
	for {
		_, err = stream.Recv()
		if err != nil {
			break
		}
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("after its server died the stream ended with %v, want UNAVAILABLE", err)
	}
	if len(report.Attempts) != 1 {
		t.Fatalf("the stream was retried after a response: %+v", report.Attempts)
	}
}

func TestStatsJSONKeys(t *testing.T) {
	f := newFixture(t, config(lb.RoundRobin), testtools.DemoServers(t, 1), nil, 0)
	b, _ := json.Marshal(f.client.GetStats())
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	for _, k := range []string{"total_connections", "max_retries", "retry_delay", "failover_timeout", "load_balancer"} {
		if _, ok := m[k]; !ok {
			t.Errorf("client stats lack %q: %s", k, b)
		}
	}
	h := rpc.NewHealthChecker(1e9, 5e8, nil)
	b, _ = json.Marshal(h.GetHealthStats())
	m = nil
	_ = json.Unmarshal(b, &m)
	for _, k := range []string{"total_servers", "healthy_servers", "unhealthy_servers", "unknown_servers", "check_interval", "check_timeout", "servers"} {
		if _, ok := m[k]; !ok {
			t.Errorf("health stats lack %q: %s", k, b)
		}
	}
}
