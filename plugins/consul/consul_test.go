package consul

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/pkg/pluginapi"
)

func configure(t *testing.T, c *testtools.Consul, extra map[string]any) *Provider {
	t.Helper()
	m := map[string]any{"address": c.Address(), "wait_time": "2s"}
	for k, v := range extra {
		m[k] = v
	}
	p := &Provider{}
	if err := p.Configure(context.Background(), testtools.Settings(t, m)); err != nil {
		t.Fatal(err)
	}
	return p
}

func describeSnapshot(snap []pluginapi.ServiceInstance) string {
	var parts []string
	for _, in := range snap {
		parts = append(parts, fmt.Sprintf("%s=%s/w%d/%s", in.ID, in.HostPort(), in.Weight, in.Health))
	}
	return strings.Join(parts, " ")
}

func watch(t *testing.T, p *Provider, service string) <-chan string {
	ctx, cancel := context.WithCancel(context.Background())
	updates := make(chan []pluginapi.ServiceInstance)
	out := make(chan string, 100)
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Watch(ctx, service, updates) }()
	go func() {
		for {
			select {
			case snap := <-updates:
				out <- describeSnapshot(snap)
			case <-done:
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return out
}

// expectSince waits for want at most a second after start.
func expectSince(t *testing.T, snaps <-chan string, want string, start time.Time) time.Duration {
	t.Helper()
	timeout := time.After(time.Second - time.Since(start))
	var last string
	for {
		select {
		case got := <-snaps:
			if got == want {
				return time.Since(start)
			}
			last = got
		case <-timeout:
			t.Fatalf("no snapshot %q within one second (last %q)", want, last)
		}
	}
}

func register(t *testing.T, client *api.Client, id string, port, passing, warning int) {
	t.Helper()
	err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: id, Name: "peervault", Port: port, Address: "127.0.0.1",
		Tags:    []string{"v1"},
		Meta:    map[string]string{"zone": "z-" + id},
		Weights: &api.AgentWeights{Passing: passing, Warning: warning},
		Check:   &api.AgentServiceCheck{CheckID: "ttl-" + id, TTL: "1h", Status: api.HealthPassing},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Every change an operator makes reaches the provider's watch within a
// second: register, a check going critical and back, a weight change,
// deregister; one registration goes through the agent's HTTP API as raw
// JSON, as curl would send it.
func TestChangesAreFollowed(t *testing.T) {
	c := testtools.StartConsul(t)
	client := c.Client("")
	register(t, client, "a", 50051, 3, 1)
	p := configure(t, c, map[string]any{"passing_only": false})
	got, err := p.Resolve(context.Background(), "peervault")
	if err != nil || len(got) != 1 || got[0].Zone != "z-a" || got[0].Metadata["tags"] != "v1" || got[0].Weight != 3 {
		t.Fatalf("resolve = %+v, %v", got, err)
	}
	snaps := watch(t, p, "peervault")
	expectSince(t, snaps, "a=127.0.0.1:50051/w3/healthy", time.Now())

	var worst time.Duration
	steps := []struct {
		name string
		do   func()
		want string
	}{
		{"register over HTTP", func() {
			body := []byte(`{"ID":"b","Name":"peervault","Address":"127.0.0.1","Port":50052,"Check":{"CheckID":"ttl-b","TTL":"1h","Status":"passing"}}`)
			req, _ := http.NewRequest(http.MethodPut, "http://"+c.Address()+"/v1/agent/service/register", bytes.NewReader(body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("register over HTTP: %v %v", err, resp)
			}
			resp.Body.Close()
		}, "a=127.0.0.1:50051/w3/healthy b=127.0.0.1:50052/w1/healthy"},
		{"check critical", func() {
			if err := client.Agent().UpdateTTL("ttl-a", "down", api.HealthCritical); err != nil {
				t.Fatal(err)
			}
		}, "a=127.0.0.1:50051/w3/unhealthy b=127.0.0.1:50052/w1/healthy"},
		{"check warning", func() {
			if err := client.Agent().UpdateTTL("ttl-a", "slow", api.HealthWarning); err != nil {
				t.Fatal(err)
			}
		}, "a=127.0.0.1:50051/w1/healthy b=127.0.0.1:50052/w1/healthy"},
		{"weight change", func() { register(t, client, "a", 50051, 7, 2) }, "a=127.0.0.1:50051/w2/healthy b=127.0.0.1:50052/w1/healthy"},
		{"check passing again", func() {
			if err := client.Agent().UpdateTTL("ttl-a", "", api.HealthPassing); err != nil {
				t.Fatal(err)
			}
		}, "a=127.0.0.1:50051/w7/healthy b=127.0.0.1:50052/w1/healthy"},
		{"deregister", func() {
			if err := client.Agent().ServiceDeregister("b"); err != nil {
				t.Fatal(err)
			}
		}, "a=127.0.0.1:50051/w7/healthy"},
	}
	for _, s := range steps {
		start := time.Now()
		s.do()
		d := expectSince(t, snaps, s.want, start)
		worst = max(worst, d)
		t.Logf("%s: %s", s.name, d)
	}
	t.Logf("slowest change from the write to the provider's snapshot: %s", worst)
}

func TestPassingOnlyHidesCriticalInstances(t *testing.T) {
	c := testtools.StartConsul(t)
	client := c.Client("")
	register(t, client, "a", 50051, 1, 1)
	register(t, client, "b", 50052, 1, 1)
	if err := client.Agent().UpdateTTL("ttl-b", "", api.HealthCritical); err != nil {
		t.Fatal(err)
	}
	p := configure(t, c, nil) // passing_only defaults to true
	got, _ := p.Resolve(context.Background(), "peervault")
	if describeSnapshot(got) != "a=127.0.0.1:50051/w1/healthy" {
		t.Fatalf("passing only gave %s", describeSnapshot(got))
	}
	p2 := configure(t, c, map[string]any{"tags": []string{"v2"}})
	if got, _ := p2.Resolve(context.Background(), "peervault"); len(got) != 0 {
		t.Fatalf("a tag no instance has matched %v", got)
	}
	p3 := configure(t, c, map[string]any{"service_name": "peervault", "passing_only": false})
	if got, _ := p3.Resolve(context.Background(), "other-name"); len(got) != 2 {
		t.Fatalf("service_name should override the pvlb service name: %v", got)
	}
}

// The agent stopped mid-watch, then started again with a new index and
// state: the watch converges to the new state.
func TestAgentRestartConverges(t *testing.T) {
	c := testtools.StartConsul(t)
	register(t, c.Client(""), "a", 50051, 1, 1)
	p := configure(t, c, nil)
	snaps := watch(t, p, "peervault")
	expectSince(t, snaps, "a=127.0.0.1:50051/w1/healthy", time.Now())
	c.Stop()
	c.Start() // -dev keeps nothing: a new cluster, with indexes from the start
	register(t, c.Client(""), "b", 50052, 1, 1)
	deadline := time.After(20 * time.Second)
	for {
		select {
		case s := <-snaps:
			if s == "b=127.0.0.1:50052/w1/healthy" {
				return
			}
		case <-deadline:
			t.Fatal("the watch did not converge after the agent restarted")
		}
	}
}

func TestConfigureErrors(t *testing.T) {
	c := testtools.StartConsul(t, "-hcl", `acl { enabled = true  default_policy = "deny"  tokens { initial_management = "root-secret-token" } }`)
	cases := []struct {
		settings map[string]any
		want     string
	}{
		{map[string]any{"address": c.Address(), "token": "wrong-secret-token"}, "the ACL token was rejected"},
		{map[string]any{"address": "127.0.0.1:1", "timeout": "500ms"}, "connect: connection refused"},
		{map[string]any{"address": c.Address(), "tls": map[string]any{"ca_file": "/nonexistent/ca.pem"}}, "tls.ca_file: open /nonexistent/ca.pem"},
		{map[string]any{"address": c.Address(), "tls": map[string]any{"insecure_skip_verify": true}}, "http: server gave HTTP response to HTTPS client"},
		{map[string]any{"address": c.Address(), "scheme": "ftp"}, `scheme: "ftp" is not "http" or "https"`},
		{map[string]any{"address": c.Address(), "wait_time": "forever"}, `wait_time: "forever" is not a positive duration`},
	}
	for _, tc := range cases {
		start := time.Now()
		err := (&Provider{}).Configure(context.Background(), testtools.Settings(t, tc.settings))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.settings, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret-token") {
			t.Errorf("the token appears in the error: %v", err)
		}
		if d := time.Since(start); d > 6*time.Second {
			t.Errorf("%v: took %s", tc.settings, d)
		}
	}
	p := &Provider{}
	if err := p.Configure(context.Background(), testtools.Settings(t, map[string]any{"address": c.Address(), "token": "root-secret-token"})); err != nil {
		t.Fatalf("the right token: %v", err)
	}
}
