package etcd

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/naming/endpoints"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/pkg/pluginapi"
)

func configure(t *testing.T, e *testtools.Etcd, extra map[string]any) *Provider {
	t.Helper()
	m := map[string]any{"endpoints": []string{e.Endpoint()}, "prefix": "services/", "dial_timeout": "2s"}
	for k, v := range extra {
		m[k] = v
	}
	p := &Provider{}
	if err := p.Configure(context.Background(), testtools.Settings(t, m)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// watch runs the provider's Watch and returns its snapshots as strings.
func watch(t *testing.T, p *Provider, service string) (<-chan string, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	updates := make(chan []pluginapi.ServiceInstance)
	out := make(chan string, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = p.Watch(ctx, service, updates)
	}()
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
	return out, cancel
}

func describeSnapshot(snap []pluginapi.ServiceInstance) string {
	var parts []string
	for _, in := range snap {
		parts = append(parts, fmt.Sprintf("%s=%s/w%d", in.ID, in.HostPort(), in.Weight))
	}
	return strings.Join(parts, " ")
}

// expect waits for a snapshot equal to want, at most a second after start,
// and returns how long after start it came.
func expect(t *testing.T, snaps <-chan string, want string) time.Duration {
	t.Helper()
	return expectSince(t, snaps, want, time.Now())
}

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

// TestNamingManagerEndpointsAreDiscovered writes with etcd's own
// naming/endpoints Manager, as services that register with etcd's tooling
// do, and follows adds, updates and deletes.
func TestNamingManagerEndpointsAreDiscovered(t *testing.T) {
	e := testtools.StartEtcd(t)
	client := e.Client()
	defer client.Close()
	em, err := endpoints.NewManager(client, "services/peervault")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	must(t, em.AddEndpoint(ctx, "services/peervault/e1", endpoints.Endpoint{Addr: "127.0.0.1:50051", Metadata: map[string]any{"weight": 3, "zone": "a"}}))

	p := configure(t, e, nil)
	got, err := p.Resolve(ctx, "peervault")
	if err != nil || len(got) != 1 || got[0].ID != "e1" || got[0].Port != 50051 || got[0].Weight != 3 || got[0].Zone != "a" {
		t.Fatalf("resolve = %+v, %v", got, err)
	}

	snaps, _ := watch(t, p, "peervault")
	expect(t, snaps, "e1=127.0.0.1:50051/w3")
	var worst time.Duration
	for _, step := range []struct {
		do   func() error
		want string
	}{
		{func() error {
			return em.AddEndpoint(ctx, "services/peervault/e2", endpoints.Endpoint{Addr: "127.0.0.1:50052"})
		}, "e1=127.0.0.1:50051/w3 e2=127.0.0.1:50052/w0"},
		{func() error {
			return em.AddEndpoint(ctx, "services/peervault/e1", endpoints.Endpoint{Addr: "127.0.0.1:60001", Metadata: map[string]any{"weight": 1}})
		}, "e1=127.0.0.1:60001/w1 e2=127.0.0.1:50052/w0"},
		{func() error { return em.DeleteEndpoint(ctx, "services/peervault/e1") }, "e2=127.0.0.1:50052/w0"},
	} {
		start := time.Now() // from before the write: the full propagation
		must(t, step.do())
		worst = max(worst, expectSince(t, snaps, step.want, start))
	}
	t.Logf("slowest change from the Manager's write to the provider's snapshot: %s", worst)
}

func TestJSONRecordsAndLeaseExpiry(t *testing.T) {
	e := testtools.StartEtcd(t)
	client := e.Client()
	defer client.Close()
	ctx := context.Background()
	p := configure(t, e, map[string]any{"format": "json"})
	snaps, _ := watch(t, p, "peervault")
	expect(t, snaps, "")

	_, err := client.Put(ctx, "services/peervault/a", `{"address":"10.0.0.1","port":50051,"weight":5,"zone":"z","health":"healthy","metadata":{"k":"v"}}`)
	must(t, err)
	expect(t, snaps, "a=10.0.0.1:50051/w5")
	got, _ := p.Resolve(ctx, "peervault")
	if got[0].Health != pluginapi.HealthHealthy || got[0].Zone != "z" || got[0].Metadata["k"] != "v" {
		t.Fatalf("record decoded as %+v", got[0])
	}

	// An instance that stops renewing its lease goes away.
	lease, err := client.Grant(ctx, 2)
	must(t, err)
	_, err = client.Put(ctx, "services/peervault/b", `{"address":"10.0.0.2","port":50052}`, clientv3.WithLease(lease.ID))
	must(t, err)
	expect(t, snaps, "a=10.0.0.1:50051/w5 b=10.0.0.2:50052/w0")
	deadline := time.After(10 * time.Second)
	for {
		select {
		case s := <-snaps:
			if s == "a=10.0.0.1:50051/w5" {
				return
			}
		case <-deadline:
			t.Fatal("the lease expired but the instance stayed")
		}
	}
}

// A watch from a compacted revision reports it, and the provider reads
// everything again rather than missing events.
func TestCompactedRevisionResyncs(t *testing.T) {
	e := testtools.StartEtcd(t)
	client := e.Client()
	defer client.Close()
	ctx := context.Background()
	var rev int64
	for i := range 5 {
		resp, err := client.Put(ctx, "services/peervault/x", fmt.Sprintf(`{"Addr":"127.0.0.1:%d"}`, 50051+i))
		must(t, err)
		rev = resp.Header.Revision
	}
	_, err := client.Compact(ctx, rev)
	must(t, err)
	p := configure(t, e, nil)
	_, cfg, _ := p.state()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := client.Watch(wctx, "services/peervault/", clientv3.WithPrefix(), clientv3.WithRev(rev-2))
	resync, err := follow(wctx, wch, cfg, "peervault", map[string]pluginapi.ServiceInstance{}, make(chan []pluginapi.ServiceInstance, 10))
	if err != nil || !resync {
		t.Fatalf("a compacted watch gave resync=%v, %v; want a resync", resync, err)
	}
}

// etcd stopped during a watch: nothing breaks; restarted: updates flow.
func TestEtcdRestartResumesTheWatch(t *testing.T) {
	e := testtools.StartEtcd(t)
	ctx := context.Background()
	p := configure(t, e, map[string]any{"format": "json"})
	snaps, _ := watch(t, p, "peervault")
	expect(t, snaps, "")
	e.Stop()
	e.Start()
	client := e.Client()
	defer client.Close()
	_, err := client.Put(ctx, "services/peervault/a", `{"address":"10.0.0.1","port":1}`)
	must(t, err)
	deadline := time.After(15 * time.Second)
	for {
		select {
		case s := <-snaps:
			if s == "a=10.0.0.1:1/w0" {
				return
			}
		case <-deadline:
			t.Fatal("no update after etcd came back")
		}
	}
}

func TestConfigureErrors(t *testing.T) {
	e := testtools.StartEtcd(t)
	client := e.Client()
	defer client.Close()
	ctx := context.Background()
	_, err := client.UserAdd(ctx, "root", "right-password")
	must(t, err)
	_, err = client.UserGrantRole(ctx, "root", "root")
	must(t, err)
	_, err = client.AuthEnable(ctx)
	must(t, err)

	cases := []struct {
		settings map[string]any
		want     string
		within   time.Duration
	}{
		{map[string]any{"endpoints": []string{e.Endpoint()}, "username": "root", "password": "wrong-password"}, "authentication failed: wrong username or password", 5 * time.Second},
		{map[string]any{"endpoints": []string{"127.0.0.1:1"}, "dial_timeout": "500ms"}, "did not answer within dial_timeout 500ms", 3 * time.Second},
		{map[string]any{"endpoints": []string{e.Endpoint()}, "dial_timeout": "700ms", "tls": map[string]any{"server_name": "etcd.test"}}, "", 4 * time.Second},
		{map[string]any{"endpoints": []string{e.Endpoint()}, "tls": map[string]any{"ca_file": "/nonexistent/ca.pem"}}, "tls.ca_file: open /nonexistent/ca.pem", time.Second},
		{map[string]any{"endpoints": []string{}}, "endpoints: lists no etcd address", time.Second},
		{map[string]any{"endpoints": []string{e.Endpoint()}, "format": "xml"}, `format: "xml" is not "etcd-naming" or "json"`, time.Second},
		{map[string]any{"endpoints": []string{e.Endpoint()}, "dial_timeout": "soon"}, `dial_timeout: "soon" is not a positive duration`, time.Second},
		{map[string]any{"endpoints": []string{e.Endpoint()}, "password": "x"}, "a password needs a username", time.Second},
	}
	for _, c := range cases {
		start := time.Now()
		err := (&Provider{}).Configure(ctx, testtools.Settings(t, c.settings))
		if err == nil {
			t.Errorf("%v: no error", c.settings)
			continue
		}
		if c.want != "" && !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.settings, err, c.want)
		}
		if strings.Contains(err.Error(), "wrong-password") {
			t.Errorf("the password appears in the error: %v", err)
		}
		if d := time.Since(start); d > c.within {
			t.Errorf("%v: took %s to fail", c.settings, d)
		}
	}
	// The right password works.
	p := &Provider{}
	if err := p.Configure(ctx, testtools.Settings(t, map[string]any{"endpoints": []string{e.Endpoint()}, "username": "root", "password": "right-password"})); err != nil {
		t.Fatal(err)
	}
	p.Close()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
