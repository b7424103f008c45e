package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"github.com/peervault/pvlb/pkg/pluginapi"
)

func ptr[T any](v T) *T { return &v }

func slice(name, service string, port int32, addrType discoveryv1.AddressType, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: "apps", Labels: map[string]string{ServiceNameLabel: service}},
		AddressType: addrType,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("grpc"), Port: ptr(port)}},
		Endpoints:   eps,
	}
}

func endpoint(pod, addr string, ready bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{
		Addresses:  []string{addr},
		Conditions: discoveryv1.EndpointConditions{Ready: ptr(ready), Serving: ptr(true)},
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: pod},
		Zone:       ptr("zone-a"),
		NodeName:   ptr("node-1"),
	}
}

func describeSnapshot(snap []pluginapi.ServiceInstance) string {
	var parts []string
	for _, in := range snap {
		parts = append(parts, fmt.Sprintf("%s=%s/%s", in.ID, in.HostPort(), in.Health))
	}
	return strings.Join(parts, " ")
}

func TestInstancesMergeDedupeAndMapConditions(t *testing.T) {
	s := settings{addressType: discoveryv1.AddressTypeIPv4}
	a := slice("web-a", "web", 8080, discoveryv1.AddressTypeIPv4, endpoint("p1", "10.0.0.1", true), endpoint("p2", "10.0.0.2", false))
	b := slice("web-b", "web", 8080, discoveryv1.AddressTypeIPv4, endpoint("p1", "10.0.0.1", false), endpoint("p3", "10.0.0.3", true))
	b.Endpoints[1].Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "zone-a"}}}
	v6 := slice("web-v6", "web", 8080, discoveryv1.AddressTypeIPv6, endpoint("p1", "fd00::1", true))
	got, err := s.instances([]*discoveryv1.EndpointSlice{a, b, v6})
	if err != nil {
		t.Fatal(err)
	}
	if d := describeSnapshot(got); d != "p1=10.0.0.1:8080/healthy p2=10.0.0.2:8080/unhealthy p3=10.0.0.3:8080/healthy" {
		t.Fatalf("instances %s", d)
	}
	if got[1].Metadata["condition"] != "serving-not-ready" || got[2].Metadata["hints.for-zones"] != "zone-a" || got[0].Zone != "zone-a" || got[0].Metadata["node"] != "node-1" {
		t.Fatalf("metadata %+v", got)
	}
	s6 := settings{addressType: discoveryv1.AddressTypeIPv6}
	if got, _ := s6.instances([]*discoveryv1.EndpointSlice{a, v6}); describeSnapshot(got) != "p1=[fd00::1]:8080/healthy" {
		t.Fatalf("IPv6 only: %s", describeSnapshot(got))
	}
}

func TestPortChoice(t *testing.T) {
	sl := slice("web", "web", 8080, discoveryv1.AddressTypeIPv4, endpoint("p1", "10.0.0.1", true))
	sl.Ports = append(sl.Ports, discoveryv1.EndpointPort{Name: ptr("metrics"), Port: ptr(int32(9090))})
	if _, err := (settings{addressType: discoveryv1.AddressTypeIPv4}).instances([]*discoveryv1.EndpointSlice{sl}); err == nil || !strings.Contains(err.Error(), "has ports grpc:8080, metrics:9090; set port") {
		t.Fatalf("two ports and no choice: %v", err)
	}
	for _, want := range []string{"metrics", "9090"} {
		got, err := (settings{Port: ptr(want), addressType: discoveryv1.AddressTypeIPv4}).instances([]*discoveryv1.EndpointSlice{sl})
		if err != nil || got[0].Port != 9090 {
			t.Fatalf("port %q: %+v, %v", want, got, err)
		}
	}
}

// fakeProvider is configured against client-go's fake clientset.
func fakeProvider(t *testing.T, client k8s.Interface, extra map[string]any) *Provider {
	t.Helper()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: apps}}]
current-context: x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	m := map[string]any{"kubeconfig": kubeconfig}
	for k, v := range extra {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	p := &Provider{newClient: func(*rest.Config) (k8s.Interface, error) { return client, nil }}
	if err := p.Configure(context.Background(), pluginapi.NewSettings(b)); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWatchWithFakeClientset(t *testing.T) {
	client := fake.NewClientset(slice("web-a", "web", 8080, discoveryv1.AddressTypeIPv4, endpoint("p1", "10.0.0.1", true)))
	p := fakeProvider(t, client, nil)
	if p.cfg.namespace != "apps" {
		t.Fatalf("namespace from the kubeconfig context: %q", p.cfg.namespace)
	}
	got, err := p.Resolve(context.Background(), "web")
	if err != nil || describeSnapshot(got) != "p1=10.0.0.1:8080/healthy" {
		t.Fatalf("resolve %s, %v", describeSnapshot(got), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates := make(chan []pluginapi.ServiceInstance)
	done := make(chan error, 1)
	go func() { done <- p.Watch(ctx, "web", updates) }()
	next := func(want string) {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case snap := <-updates:
				if describeSnapshot(snap) == want {
					return
				}
			case <-timeout:
				t.Fatalf("no snapshot %q", want)
			}
		}
	}
	next("p1=10.0.0.1:8080/healthy")
	_, err = client.DiscoveryV1().EndpointSlices("apps").Create(ctx, slice("web-b", "web", 8080, discoveryv1.AddressTypeIPv4, endpoint("p2", "10.0.0.2", false)), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	next("p1=10.0.0.1:8080/healthy p2=10.0.0.2:8080/unhealthy")
	if err := client.DiscoveryV1().EndpointSlices("apps").Delete(ctx, "web-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	next("p2=10.0.0.2:8080/unhealthy")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("watch ended with %v", err)
	}
}

func TestSettingsErrors(t *testing.T) {
	for in, want := range map[string]string{
		`{"kubeconfig":"/nonexistent/kubeconfig"}`: "kubeconfig: open /nonexistent/kubeconfig",
		`{"address_type":"IPv5"}`:                  `address_type: "IPv5" is not "IPv4" or "IPv6"`,
		`{"service":"a","label_selector":"app=a"}`: "set service or label_selector, not both",
		`{"label_selector":"app in (a"}`:           "label_selector:",
		`{"resync_period":"often"}`:                `resync_period: "often" is not a positive duration`,
	} {
		err := (&Provider{}).Configure(context.Background(), pluginapi.NewSettings([]byte(in)))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", in, err, want)
		}
	}
}
