package consul_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/pkg/discovery"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/pluginapi"
)

// TestChangesReachThePicker runs the provider as a real plugin process
// under pvlb's host: each weight change made through Consul's API is timed
// until picks follow it; with the agent stopped, picks go on; when it is
// back, changes flow again.
func TestChangesReachThePicker(t *testing.T) {
	c := testtools.StartConsul(t)
	client := c.Client("")
	registerPort := func(client *api.Client, port int) {
		t.Helper()
		err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{
			ID: "a", Name: "peervault", Address: "127.0.0.1", Port: port,
			Check: &api.AgentServiceCheck{CheckID: "ttl-a", TTL: "1h", Status: api.HealthPassing},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	registerPort(client, 50000)

	host := discovery.NewHost(&discovery.Finder{Dirs: []string{testtools.BuildPlugin(t, "./pvlb-discovery-consul", "consul")}}, nil)
	defer host.Close()
	cfg := lb.DefaultLoadBalancerConfig()
	cfg.Service = "peervault"
	balancer, _ := lb.NewLoadBalancer(cfg, nil)
	settings := pluginapi.NewSettings([]byte(fmt.Sprintf(`{"address":%q,"wait_time":"2s"}`, c.Address())))
	ctx := context.Background()
	src, err := host.Follow(ctx, "consul", "", settings, "peervault", balancer)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()

	waitPort := func(port int, within time.Duration, start time.Time) time.Duration {
		t.Helper()
		for {
			ep, err := balancer.Pick(ctx)
			if err == nil {
				balancer.Release(ep)
				if ep.Port == port {
					return time.Since(start)
				}
			}
			if time.Since(start) > within {
				t.Fatalf("port %d did not reach the picker within %s", port, within)
			}
			time.Sleep(200 * time.Microsecond)
		}
	}
	var worst time.Duration
	for i := 1; i <= 10; i++ {
		start := time.Now()
		registerPort(client, 50000+i)
		worst = max(worst, waitPort(50000+i, time.Second, start))
	}
	t.Logf("slowest of 10 Consul registrations to reach the picker: %s", worst)

	c.Stop()
	for range 100 {
		ep, err := balancer.Pick(ctx)
		if err != nil {
			t.Fatalf("a pick failed while Consul was down: %v", err)
		}
		balancer.Release(ep)
	}
	c.Start()
	registerPort(c.Client(""), 59999)
	waitPort(59999, 30*time.Second, time.Now())
}
