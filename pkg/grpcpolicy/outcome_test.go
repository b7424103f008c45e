package grpcpolicy_test

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/statuscode"
	pb "github.com/peervault/pvlb/proto/peervault/v1"
)

// A pvlb:/// channel reports every call's outcome to the core through the
// pick's Done callback, classed like LoadBalancedClient's.
func TestChannelReportsEveryOutcome(t *testing.T) {
	servers := testtools.OutcomeServers(t, statuscode.Internal)
	balancer := newBalancer(t, config(lb.RoundRobin), servers)
	stub := newChannelTo(t, balancer)
	ctx := context.Background()
	var failed int
	for i := range 30 {
		_, err := stub.GetUserData(ctx, &pb.GetUserDataRequest{UserId: "u"})
		if status.Code(err) == codes.Internal {
			failed++
		} else if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if failed == 0 {
		t.Fatal("no call reached the failing server")
	}
	// Picks the channel made while connections were still coming up, and
	// gave back unused, ended neutral; the caller's mistakes add to them.
	var neutral uint64
	for _, s := range balancer.GetServerStats().Servers {
		neutral += s.Neutral
	}
	for range 3 {
		if _, err := stub.GetUserData(ctx, &pb.GetUserDataRequest{}); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("empty user id: %v", err)
		}
	}
	testtools.CheckOutcomes(t, balancer, neutral+3)
}

// While one endpoint's connection is still coming up, its share is spread
// over the ready ones alike rather than handed to its neighbour.
func TestConnectingEndpointsShareIsSpreadEvenly(t *testing.T) {
	servers := testtools.DemoServers(t, 3)
	// A listener that accepts and never speaks HTTP/2 keeps the
	// connection CONNECTING.
	silent := blackHole(t)
	balancer := newBalancer(t, config(lb.RoundRobin), servers)
	host, port := testtools.HostPort(silent)
	if err := balancer.AddServer("silent", host, port, 1); err != nil {
		t.Fatal(err)
	}
	stub := newChannel(t, balancer, 3)
	got := testtools.ServedBy(t, context.Background(), stub, 600)
	for _, name := range []string{"server1", "server2", "server3"} {
		if got[name] < 180 || got[name] > 220 {
			t.Fatalf("served %v; want about 200 each while silent connects", got)
		}
	}
}
