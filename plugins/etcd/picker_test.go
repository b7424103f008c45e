package etcd_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/client/v3/naming/endpoints"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/pkg/discovery"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/pluginapi"
)

// TestChangesReachThePicker runs the provider as a real plugin process
// under pvlb's host and times etcd writes until a pick sees them.
func TestChangesReachThePicker(t *testing.T) {
	e := testtools.StartEtcd(t)
	client := e.Client()
	defer client.Close()
	em, err := endpoints.NewManager(client, "services/peervault")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := em.AddEndpoint(ctx, "services/peervault/e0", endpoints.Endpoint{Addr: "127.0.0.1:50000"}); err != nil {
		t.Fatal(err)
	}
	host := discovery.NewHost(&discovery.Finder{Dirs: []string{testtools.BuildPlugin(t, "./pvlb-discovery-etcd", "etcd")}}, nil)
	defer host.Close()
	cfg := lb.DefaultLoadBalancerConfig()
	cfg.Service = "peervault"
	balancer, _ := lb.NewLoadBalancer(cfg, nil)
	settings := pluginapi.NewSettings([]byte(fmt.Sprintf(`{"endpoints":[%q],"prefix":"services/"}`, e.Endpoint())))
	src, err := host.Follow(ctx, "etcd", "", settings, "peervault", balancer)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()

	var worst time.Duration
	for i := 1; i <= 20; i++ {
		port := 50000 + i
		start := time.Now()
		if err := em.AddEndpoint(ctx, "services/peervault/e0", endpoints.Endpoint{Addr: fmt.Sprintf("127.0.0.1:%d", port)}); err != nil {
			t.Fatal(err)
		}
		for {
			ep, err := balancer.Pick(ctx)
			if err == nil {
				balancer.Release(ep)
				if ep.Port == port {
					break
				}
			}
			if time.Since(start) > time.Second {
				t.Fatalf("change %d did not reach the picker within one second", i)
			}
			time.Sleep(100 * time.Microsecond)
		}
		worst = max(worst, time.Since(start))
	}
	t.Logf("slowest of 20 etcd writes to reach the picker: %s", worst)

	// etcd goes away: the balancer keeps serving the last endpoints.
	e.Stop()
	for range 100 {
		ep, err := balancer.Pick(ctx)
		if err != nil {
			t.Fatalf("a pick failed while etcd was down: %v", err)
		}
		balancer.Release(ep)
	}
	// etcd comes back: updates flow again.
	e.Start()
	client2 := e.Client()
	defer client2.Close()
	em2, _ := endpoints.NewManager(client2, "services/peervault")
	if err := em2.AddEndpoint(ctx, "services/peervault/e0", endpoints.Endpoint{Addr: "127.0.0.1:59999"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ep, err := balancer.Pick(ctx)
		if err == nil {
			balancer.Release(ep)
			if ep.Port == 59999 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no update reached the picker after etcd came back")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
