package telemetry_test

import (
	"fmt"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/policy"
	"github.com/peervault/pvlb/pkg/rpc"
	"github.com/peervault/pvlb/pkg/telemetry"
)

// A balancer's metrics on a MeterProvider of your own, recorded by a
// LoadBalancedClient and by a pvlb:/// channel's ChannelCalls, as
// docs/metrics.md shows.
func Example() {
	meterProvider := sdkmetric.NewMeterProvider() // with your reader or exporter
	balancer, err := lb.New(lb.DefaultConfig(), nil)
	if err != nil {
		panic(err)
	}
	m, err := telemetry.New(meterProvider, balancer)
	if err != nil {
		panic(err)
	}
	defer m.Close()
	client, err := rpc.NewLoadBalancedClient(balancer, nil, nil, rpc.WithMetrics(m))
	if err != nil {
		panic(err)
	}
	defer client.Close()
	calls, err := rpc.NewChannelCalls(policy.DefaultRetry(), nil, nil)
	if err != nil {
		panic(err)
	}
	calls.UseMetrics(m)
	fmt.Println("recording")
	// Output: recording
}
