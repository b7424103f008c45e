package dns

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/pkg/config"
	"github.com/peervault/pvlb/pkg/discovery"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/pluginapi"
	"github.com/peervault/pvlb/pkg/service"
	pb "github.com/peervault/pvlb/proto/peervault/v1"
)

func configure(t *testing.T, c *testtools.CoreDNS, extra map[string]any) *Provider {
	t.Helper()
	p := &Provider{}
	if err := p.Configure(context.Background(), settingsFor(t, c, extra)); err != nil {
		t.Fatal(err)
	}
	return p
}

func settingsFor(t *testing.T, c *testtools.CoreDNS, extra map[string]any) pluginapi.Settings {
	t.Helper()
	m := map[string]any{"name": "peervault." + testtools.Zone, "servers": []string{c.Addr()}, "min_refresh": "1s"}
	for k, v := range extra {
		m[k] = v
	}
	return testtools.Settings(t, m)
}

func describe(snap []pluginapi.ServiceInstance) string {
	var parts []string
	for _, in := range snap {
		parts = append(parts, fmt.Sprintf("%s/w%d", in.HostPort(), in.Weight))
	}
	return strings.Join(parts, " ")
}

// A and AAAA records become endpoints on the configured port.
func TestAddressRecords(t *testing.T) {
	c := testtools.StartCoreDNS(t, "peervault 1 IN A 127.0.0.2", "peervault 1 IN A 127.0.0.1", "peervault 1 IN AAAA ::1")
	p := configure(t, c, map[string]any{"port": 50051})
	got, err := p.Resolve(context.Background(), "ignored")
	if err != nil {
		t.Fatal(err)
	}
	if want := "127.0.0.1:50051/w1 127.0.0.2:50051/w1 [::1]:50051/w1"; describe(got) != want {
		t.Fatalf("got %q, want %q", describe(got), want)
	}
}

// SRV records of the lowest priority become endpoints with their ports
// and weights; a higher priority's are left for when those are gone.
func TestSRVWeightsBecomeEndpointWeights(t *testing.T) {
	c := testtools.StartCoreDNS(t,
		"_grpc._tcp.peervault 1 IN SRV 10 3 50051 a.peervault",
		"_grpc._tcp.peervault 1 IN SRV 10 1 50052 b.peervault",
		"_grpc._tcp.peervault 1 IN SRV 20 5 50053 c.peervault",
		"a.peervault 1 IN A 127.0.0.1", "b.peervault 1 IN A 127.0.0.2", "c.peervault 1 IN A 127.0.0.3")
	p := configure(t, c, map[string]any{"record": "srv", "name": "_grpc._tcp.peervault." + testtools.Zone})
	got, err := p.Resolve(context.Background(), "peervault")
	if err != nil {
		t.Fatal(err)
	}
	if want := "127.0.0.1:50051/w3 127.0.0.2:50052/w1"; describe(got) != want {
		t.Fatalf("got %q, want %q", describe(got), want)
	}
	if got[0].Metadata["srv_target"] != "a.peervault.example.test" {
		t.Fatalf("metadata %v", got[0].Metadata)
	}
	c.SetRecords("_grpc._tcp.peervault 1 IN SRV 20 5 50053 c.peervault", "c.peervault 1 IN A 127.0.0.3")
	testtools.WaitFor(t, "the backup priority to be used", func() bool {
		got, err := p.Resolve(context.Background(), "peervault")
		return err == nil && describe(got) == "127.0.0.3:50053/w5"
	})
}

// Through pvlb's discovery host and a balancer: a change of the zone file
// reaches the balancer within the TTL's floor (min_refresh, 1s) and a
// second; while DNS is down the balancer keeps the last endpoints; when it
// is back, changes flow again.
func TestZoneChangesReachTheBalancerAndOutagesKeepTheLast(t *testing.T) {
	dir := testtools.BuildPlugin(t, "./pvlb-discovery-dns", "dns")
	host := discovery.NewHost(&discovery.Finder{Dirs: []string{dir}}, nil)
	t.Cleanup(host.Close)
	c := testtools.StartCoreDNS(t, "peervault 1 IN A 127.0.0.1", "peervault 1 IN A 127.0.0.2")
	b, err := lb.New(lb.Config{Service: "peervault", Strategy: lb.StrategyConfig{Kind: lb.RoundRobin}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	src, err := host.Follow(context.Background(), "dns", "", settingsFor(t, c, map[string]any{"port": 50051}), "peervault", b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Close)
	endpoints := func() string {
		var ids []string
		for _, e := range b.Endpoints() {
			ids = append(ids, e.ID)
		}
		return strings.Join(ids, " ")
	}
	if got := endpoints(); got != "127.0.0.1:50051 127.0.0.2:50051" {
		t.Fatalf("endpoints %q", got)
	}
	changed := time.Now()
	c.SetRecords("peervault 1 IN A 127.0.0.2", "peervault 1 IN A 127.0.0.3")
	testtools.WaitFor(t, "the new records", func() bool { return endpoints() == "127.0.0.2:50051 127.0.0.3:50051" })
	took := time.Since(changed)
	t.Logf("a zone change reached the balancer after %s (TTL 1s, min_refresh 1s, CoreDNS reloads every 100ms)", took.Round(time.Millisecond))
	if took > 2*time.Second+200*time.Millisecond {
		t.Errorf("the change took %s, want within min_refresh + 1s", took)
	}

	c.Stop()
	failures := src.Stats().LastErr
	testtools.WaitFor(t, "the outage to be seen", func() bool { return src.Stats().LastErr != failures })
	if got := endpoints(); got != "127.0.0.2:50051 127.0.0.3:50051" {
		t.Fatalf("during the outage the balancer has %q, want the last endpoints", got)
	}
	c.SetRecords("peervault 1 IN A 127.0.0.4")
	c.Start()
	testtools.WaitFor(t, "the records after the outage", func() bool { return endpoints() == "127.0.0.4:50051" })
}

func TestSettingsAreChecked(t *testing.T) {
	p := &Provider{}
	for _, tc := range []struct {
		settings map[string]any
		want     string
	}{
		{map[string]any{"record": "mx"}, `record: "mx" is not "address" or "srv"`},
		{map[string]any{"record": "srv", "port": 50051}, "SRV records carry their own ports"},
		{map[string]any{"port": 70000}, "not a port"},
		{map[string]any{"min_refresh": "10s", "max_refresh": "5s"}, "less than min_refresh"},
		{map[string]any{"servers": []string{"127.0.0.1:x"}}, "has no valid port"},
		{map[string]any{"name": "bad name"}, "is not a DNS name"},
	} {
		problems := p.Validate(testtools.Settings(t, tc.settings))
		if len(problems) == 0 || !strings.Contains(problems[0].Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.settings, problems, tc.want)
		}
	}
}

// A service whose servers are all unhealthy asks DNS again at once, not
// at the next refresh: here min_refresh is a minute, the only server
// found refuses connections, and the SRV record moves to a live server;
// the next calls find it within seconds.
func TestNoHealthyServerResolvesAgainOnDemand(t *testing.T) {
	dir := testtools.BuildPlugin(t, "./pvlb-discovery-dns", "dns")
	host := discovery.NewHost(&discovery.Finder{Dirs: []string{dir}}, nil)
	t.Cleanup(host.Close)
	live := testtools.DemoServers(t, 1)[0]
	_, livePort := testtools.HostPort(live.Addr())
	deadPort := freePort(t)
	c := testtools.StartCoreDNS(t, fmt.Sprintf("_grpc._tcp.peervault 60 IN SRV 10 1 %d a.peervault", deadPort), "a.peervault 60 IN A 127.0.0.1")
	src := fmt.Sprintf(`discovery "dns" "main" {
  name        = "_grpc._tcp.peervault.%s"
  record      = "srv"
  servers     = [%q]
  min_refresh = "1m"
}
health_policy "quick" {
  interval            = "100ms"
  timeout             = "50ms"
  unhealthy_threshold = 1
  healthy_threshold   = 1
}
service "peervault" {
  discovery = discovery.dns.main
  health    = health_policy.quick
}
`, testtools.Zone, c.Addr())
	cfg, diags := config.NewLoader().LoadSources(map[string][]byte{"pvlb.hcl": []byte(src)})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	svcCfg, _ := cfg.Service("peervault")
	svc, err := service.New(context.Background(), svcCfg, service.Options{HealthChecks: true, Host: host, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	stub := pb.NewPeerVaultServiceClient(svc.Client)
	testtools.WaitFor(t, "the dead server to be unhealthy", func() bool { return svc.Balancer.GetServerStats().UnhealthyServers == 1 })
	c.SetRecords(fmt.Sprintf("_grpc._tcp.peervault 60 IN SRV 10 1 %d a.peervault", livePort), "a.peervault 60 IN A 127.0.0.1")
	moved := time.Now()
	testtools.WaitFor(t, "a call to reach the live server", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := stub.GetUserData(ctx, &pb.GetUserDataRequest{UserId: "u"})
		return err == nil
	})
	t.Logf("calls reached the server DNS moved to after %s (min_refresh 1m, TTL 60s)", time.Since(moved).Round(time.Millisecond))
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
