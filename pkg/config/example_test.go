package config_test

import (
	"fmt"

	"github.com/peervault/pvlb/pkg/config"
)

// Load a configuration and read a service's resolved settings.
func ExampleLoad() {
	cfg, diags := config.Load("../../examples/weighted.hcl")
	if diags.HasErrors() {
		fmt.Println(diags)
		return
	}
	svc, _ := cfg.Service("peervault")
	fmt.Println(svc.Strategy.Kind, svc.Health.Interval, svc.Retry.MaxRetries)
	for _, ep := range svc.Discovery.Endpoints {
		fmt.Println(ep.ID, ep.Address, ep.Weight)
	}
	// Output:
	// weighted 1s 3
	// primary 127.0.0.1:50051 5
	// secondary 127.0.0.1:50052 2
	// backup 127.0.0.1:50053 1
}
