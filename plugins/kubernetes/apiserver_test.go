package kubernetes_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/pkg/discovery"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/pluginapi"
	"github.com/peervault/pvlb/plugins/kubernetes"
)

func ptr[T any](v T) *T { return &v }

func endpoints(n, from int, ready bool) []discoveryv1.Endpoint {
	var out []discoveryv1.Endpoint
	for i := from; i < from+n; i++ {
		out = append(out, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.0.0.%d", i)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(ready)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: fmt.Sprintf("web-%d", i)},
		})
	}
	return out
}

func endpointSlice(name string, eps []discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Labels: map[string]string{kubernetes.ServiceNameLabel: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("grpc"), Port: ptr(int32(8080))}},
		Endpoints:   eps,
	}
}

// healthyPorts describes the balancer: ids of the endpoints a pick may use.
func eligible(b *lb.LoadBalancer) string {
	var ids []string
	for _, e := range b.Endpoints() {
		if e.Health() != lb.HealthUnhealthy {
			ids = append(ids, e.ID)
		}
	}
	return strings.Join(ids, ",")
}

// TestAgainstARealAPIServer runs the provider as a real plugin process
// against a real kube-apiserver: creating, scaling, a pod turning
// not-ready and a slice split in two each reach the picker within one
// second; the watch converges across an API server restart; an account
// without permission gets a clear 403.
func TestAgainstARealAPIServer(t *testing.T) {
	kube := testtools.StartKube(t)
	admin := kube.Kubeconfig("admin", "system:masters")
	client, err := k8s.NewForConfig(kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	slices := client.DiscoveryV1().EndpointSlices("default")
	if _, err := slices.Create(ctx, endpointSlice("web-a", endpoints(2, 1, true)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	host := discovery.NewHost(&discovery.Finder{Dirs: []string{testtools.BuildPlugin(t, "./pvlb-discovery-kubernetes", "kubernetes")}}, nil)
	defer host.Close()
	cfg := lb.DefaultLoadBalancerConfig()
	cfg.Service = "web"
	balancer, _ := lb.NewLoadBalancer(cfg, nil)
	settings, _ := json.Marshal(map[string]any{"kubeconfig": admin, "namespace": "default"})
	src, err := host.Follow(ctx, "kubernetes", "", pluginapi.NewSettings(settings), "web", balancer)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if got := eligible(balancer); got != "web-1,web-2" {
		t.Fatalf("initial endpoints %s", got)
	}

	wait := func(what, want string, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for eligible(balancer) != want {
			if time.Since(start) > within {
				t.Fatalf("%s: %q did not reach the picker within %s (have %q)", what, want, within, eligible(balancer))
			}
			time.Sleep(time.Millisecond)
		}
		return time.Since(start)
	}
	update := func(name string, eps []discoveryv1.Endpoint) {
		t.Helper()
		sl, err := slices.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sl.Endpoints = eps
		if _, err := slices.Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var worst time.Duration
	update("web-a", endpoints(4, 1, true)) // scale up
	worst = max(worst, wait("scale up", "web-1,web-2,web-3,web-4", time.Second))
	eps := endpoints(4, 1, true)
	eps[1].Conditions.Ready = ptr(false) // web-2 not ready
	update("web-a", eps)
	worst = max(worst, wait("not ready", "web-1,web-3,web-4", time.Second))
	update("web-a", endpoints(2, 1, true)) // split: web-a keeps 1-2, web-b takes 3-4
	if _, err := slices.Create(ctx, endpointSlice("web-b", endpoints(2, 3, true)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	worst = max(worst, wait("split", "web-1,web-2,web-3,web-4", time.Second))
	if err := slices.Delete(ctx, "web-b", metav1.DeleteOptions{}); err != nil { // scale down
		t.Fatal(err)
	}
	worst = max(worst, wait("scale down", "web-1,web-2", time.Second))
	t.Logf("slowest change to reach the picker: %s", worst)

	// The API server restarts mid-watch: the informer's reflector lists
	// again and the state converges, with changes made while it was down.
	api := kube.Env.ControlPlane.APIServer
	if err := api.Stop(); err != nil {
		t.Fatal(err)
	}
	for range 50 { // picks go on meanwhile
		ep, err := balancer.Pick(ctx)
		if err != nil {
			t.Fatalf("a pick failed while the API server was down: %v", err)
		}
		balancer.Release(ep)
	}
	if err := api.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := slices.Create(ctx, endpointSlice("web-c", endpoints(1, 9, true)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("after an API server restart", "web-1,web-2,web-9", 60*time.Second)

	// An account without permission: a clear 403.
	nobody := kube.Kubeconfig("nobody")
	settings, _ = json.Marshal(map[string]any{"kubeconfig": nobody, "namespace": "default"})
	err = (&kubernetes.Provider{}).Configure(ctx, pluginapi.NewSettings(settings))
	if err == nil || !strings.Contains(err.Error(), `permission denied: the account may not list endpointslices.discovery.k8s.io in namespace "default"`) {
		t.Fatalf("no permission: %v", err)
	}
}
