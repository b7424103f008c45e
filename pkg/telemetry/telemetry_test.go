package telemetry_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/policy"
	"github.com/peervault/pvlb/pkg/rpc"
	"github.com/peervault/pvlb/pkg/statuscode"
	"github.com/peervault/pvlb/pkg/telemetry"
	pb "github.com/peervault/pvlb/proto/peervault/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// collect reads every metric the reader holds, by name.
func collect(t *testing.T, r *sdkmetric.ManualReader) map[string]metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m.Data
		}
	}
	return out
}

func attr(set attribute.Set, k attribute.Key) string {
	v, _ := set.Value(k)
	return v.AsString()
}

// Calls to three real servers show up in the metrics as they happened,
// through a LoadBalancedClient and through a pvlb:/// channel with its
// ChannelCalls: picks and successes per endpoint, and each attempt's
// duration by endpoint and status, adding up to the calls made and to
// what the servers answered.
func TestMetricsAddUpToTheCalls(t *testing.T) {
	for _, path := range []string{"LoadBalancedClient", "pvlb:/// channel"} {
		t.Run(path, func(t *testing.T) { testMetricsAddUp(t, path) })
	}
}

func testMetricsAddUp(t *testing.T, path string) {
	servers := testtools.DemoServers(t, 3)
	b, err := lb.New(lb.Config{Service: "peervault", Strategy: lb.StrategyConfig{Kind: lb.RoundRobin}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	testtools.AddServers(t, b, servers)
	m, reader := manualMetrics(t, b)
	var stub pb.PeerVaultServiceClient
	if path == "LoadBalancedClient" {
		stub = pb.NewPeerVaultServiceClient(testtools.LoadBalancedClient(t, b, nil, rpc.WithMetrics(m)))
	} else {
		calls, err := rpc.NewChannelCalls(policy.DefaultRetry(), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		calls.UseMetrics(m)
		stub = pb.NewPeerVaultServiceClient(testtools.CallsChannel(t, b, calls))
	}
	const ok, notFound = 90, 30
	for i := range ok + notFound {
		id := "u"
		if i%4 == 3 {
			id = "missing-u" // NOT_FOUND: the caller's mistake, neutral for the endpoint
		}
		_, _ = stub.GetUserData(context.Background(), &pb.GetUserDataRequest{UserId: id}, grpc.WaitForReady(true))
	}
	// A server stream's attempt counts too, on both paths.
	const extra = 1
	st, err := stub.WatchUserEvents(context.Background(), &pb.WatchUserEventsRequest{UserId: "u", Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := st.Recv(); err != nil {
			break
		}
	}
	got := collect(t, reader)

	picks := got["pvlb.endpoint.picks"].(metricdata.Sum[int64])
	var totalPicks int64
	for _, dp := range picks.DataPoints {
		id := attr(dp.Attributes, telemetry.EndpointKey)
		for _, s := range servers {
			if s.Name() == id && dp.Value != s.Calls() {
				t.Errorf("%s: %d picks, the server answered %d calls", id, dp.Value, s.Calls())
			}
		}
		totalPicks += dp.Value
	}
	if totalPicks != ok+notFound+extra {
		t.Errorf("%d picks, want %d", totalPicks, ok+notFound+extra)
	}
	byOutcome := map[string]int64{}
	for _, dp := range got["pvlb.endpoint.calls"].(metricdata.Sum[int64]).DataPoints {
		byOutcome[attr(dp.Attributes, telemetry.OutcomeKey)] += dp.Value
	}
	if byOutcome["success"] != ok+extra || byOutcome["neutral"] != notFound || byOutcome["failure"] != 0 {
		t.Errorf("calls by outcome %v, want %d successes and %d neutral", byOutcome, ok+extra, notFound)
	}
	byStatus := map[string]uint64{}
	streams := uint64(0)
	for _, dp := range got["pvlb.client.attempt.duration"].(metricdata.Histogram[float64]).DataPoints {
		switch attr(dp.Attributes, telemetry.MethodKey) {
		case "/peervault.PeerVaultService/GetUserData":
			byStatus[attr(dp.Attributes, telemetry.StatusKey)] += dp.Count
		case "/peervault.PeerVaultService/WatchUserEvents":
			streams += dp.Count
		default:
			t.Errorf("attempt attributes %v", dp.Attributes.ToSlice())
		}
		if attr(dp.Attributes, telemetry.TargetKey) != "peervault" {
			t.Errorf("attempt attributes %v", dp.Attributes.ToSlice())
		}
	}
	if streams != uint64(extra) {
		t.Errorf("%d stream attempts recorded, want %d", streams, extra)
	}
	if byStatus["OK"] != ok || byStatus["NOT_FOUND"] != notFound {
		t.Errorf("attempts by status %v, want %d OK and %d NOT_FOUND", byStatus, ok, notFound)
	}
	for _, dp := range got["pvlb.client.calls"].(metricdata.Sum[int64]).DataPoints {
		if attr(dp.Attributes, telemetry.EventKey) == "call" && dp.Value != ok+notFound+extra {
			t.Errorf("%d calls counted, want %d", dp.Value, ok+notFound+extra)
		}
	}
	healthy := 0
	for _, dp := range got["pvlb.endpoint.health"].(metricdata.Gauge[int64]).DataPoints {
		if attr(dp.Attributes, telemetry.HealthKey) == "unknown" {
			healthy += int(dp.Value)
		}
	}
	if healthy != 3 {
		t.Errorf("%d endpoints of unknown health, want 3 (nothing checks them)", healthy)
	}
	for _, dp := range got["pvlb.service.endpoints"].(metricdata.Gauge[int64]).DataPoints {
		if dp.Value != 3 {
			t.Errorf("%s endpoints: %d, want 3", attr(dp.Attributes, telemetry.StateKey), dp.Value)
		}
	}
}

// BenchmarkAttempt measures recording one attempt's duration with a real
// MeterProvider; without metrics nothing is called at all.
func BenchmarkAttempt(b *testing.B) {
	bal, err := lb.New(lb.Config{Service: "peervault", Strategy: lb.StrategyConfig{Kind: lb.RoundRobin}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := bal.AddServer("s1", "10.0.0.1", 50051, 1); err != nil {
		b.Fatal(err)
	}
	e, _ := bal.Endpoint("s1")
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	m, err := telemetry.New(mp, bal)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = m.Close() }()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		m.Attempt(ctx, "/peervault.PeerVaultService/GetUserData", e, statuscode.OK, 3*time.Millisecond)
	}
}

// manualMetrics records b's metrics on a MeterProvider whose reader the
// test collects from; both end with the test.
func manualMetrics(t *testing.T, b *lb.LoadBalancer) (*telemetry.Metrics, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	m, err := telemetry.New(mp, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m, reader
}

// Endpoint series carry the endpoint's zone as grpc.lb.locality (gRFC
// A78), and leave it out for an endpoint without one.
func TestEndpointSeriesCarryTheirZone(t *testing.T) {
	b, err := lb.New(lb.Config{Service: "peervault", Strategy: lb.StrategyConfig{Kind: lb.RoundRobin}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range []lb.EndpointSpec{{ID: "a1", Host: "10.0.0.1", Port: 1, Weight: 1, Zone: "eu-west-1a"}, {ID: "x", Host: "10.0.0.2", Port: 1, Weight: 1}} {
		if err := b.AddEndpoint(spec); err != nil {
			t.Fatal(err)
		}
	}
	_, reader := manualMetrics(t, b)
	zones := map[string]string{}
	for _, dp := range collect(t, reader)["pvlb.endpoint.picks"].(metricdata.Sum[int64]).DataPoints {
		zone, ok := dp.Attributes.Value(telemetry.LocalityKey)
		if ok {
			zones[attr(dp.Attributes, telemetry.EndpointKey)] = zone.AsString()
		}
	}
	if len(zones) != 1 || zones["a1"] != "eu-west-1a" {
		t.Fatalf("localities by endpoint %v, want a1's eu-west-1a alone", zones)
	}
}
