package service

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/internal/testtools/procstate"
	"github.com/peervault/pvlb/pkg/config"
	"github.com/peervault/pvlb/pkg/demoserver"
	"github.com/peervault/pvlb/pkg/discovery"
	"github.com/peervault/pvlb/pkg/pluginapi"
	"github.com/peervault/pvlb/pkg/tlsfiles"
	pb "github.com/peervault/pvlb/proto/peervault/v1"
)

// pluginDir holds the example file provider, built once for the package.
var pluginDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pvlb-plugins")
	if err != nil {
		panic(err)
	}
	pluginDir = dir
	if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, pluginapi.ExecutablePrefix+"file"), "../../examples/plugins/file").CombinedOutput(); err != nil {
		panic(fmt.Sprintf("build the file plugin: %v\n%s", err, out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left behind:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// source is a configuration of the service peervault with strategy kind,
// health checks every interval, and its servers found by a static list or,
// with endpointsFile, by the file plugin reading that file (written here).
func source(t *testing.T, kind, interval string, servers []*demoserver.Server, endpointsFile string) *config.Config {
	t.Helper()
	block, discoveryKind := testtools.DiscoveryBlock(t, servers, endpointsFile)
	src := block + fmt.Sprintf(`strategy "chosen" {
  kind = %q
}
health_policy "checks" {
  interval = %q
  timeout  = "100ms"
}
service "peervault" {
  discovery = discovery.%s.local
  strategy  = strategy.chosen
  health    = health_policy.checks
}
`, kind, interval, discoveryKind)
	cfg, diags := config.NewLoader().LoadSources(map[string][]byte{"pvlb.hcl": []byte(src)})
	if diags.HasErrors() {
		t.Fatalf("configuration: %s\n%s", diags.Error(), src)
	}
	return cfg
}

func serviceOf(t *testing.T, cfg *config.Config) *config.Service {
	t.Helper()
	svc, ok := cfg.Service("peervault")
	if !ok {
		t.Fatal("no service peervault")
	}
	return svc
}

// caller keeps calls going through s's client until stop, and counts the
// ones that failed.
func caller(s *Service) (stop func() (calls, failed int64, firstErr error)) {
	stub := pb.NewPeerVaultServiceClient(s.Client)
	var calls, failed atomic.Int64
	var first atomic.Pointer[error]
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				calls.Add(1)
				if _, err := stub.GetUserData(context.Background(), &pb.GetUserDataRequest{UserId: "u"}); err != nil {
					failed.Add(1)
					first.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	return func() (int64, int64, error) {
		close(done)
		wg.Wait()
		var err error
		if p := first.Load(); p != nil {
			err = *p
		}
		return calls.Load(), failed.Load(), err
	}
}

// A service reloaded again and again while calls run through it: the
// strategy and health checks change, a server is removed, the discovery
// moves from a static list to a plugin, from that plugin to another, and
// back. No call fails, each change is in force once Reload returns, every
// plugin a reload replaced has ended, and Close leaves no goroutine
// (TestMain) and no plugin behind.
func TestReloadWhileCalling(t *testing.T) {
	servers := testtools.DemoServers(t, 3)
	dir := t.TempDir()
	host := discovery.NewHost(&discovery.Finder{Dirs: []string{pluginDir}}, nil)
	defer host.Close()
	ctx := context.Background()
	cfg := source(t, "round_robin", "1s", servers, "")
	s, err := New(ctx, serviceOf(t, cfg), Options{HealthChecks: true, Host: host, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	stop := caller(s)
	reload := func(cfg *config.Config) {
		t.Helper()
		if err := s.Reload(ctx, serviceOf(t, cfg), Options{Config: cfg}); err != nil {
			t.Fatal(err)
		}
	}
	endpoints := func() string {
		var ids []string
		for _, e := range s.Balancer.Endpoints() {
			ids = append(ids, e.ID)
		}
		return strings.Join(ids, ",")
	}

	reload(source(t, "least_connections", "200ms", servers, ""))
	if got := s.Balancer.GetServerStats().Strategy; got != "least_connections" {
		t.Fatalf("strategy %s after the reload", got)
	}
	if got := s.Health.GetHealthStats().CheckInterval; got != "200ms" {
		t.Fatalf("health checks every %s after the reload, want 200ms", got)
	}

	reload(source(t, "least_connections", "200ms", servers[:2], ""))
	if got := endpoints(); got != "server1,server2" {
		t.Fatalf("endpoints %s after server3's removal", got)
	}
	s3 := servers[2].Calls()

	reload(source(t, "peak_ewma", "200ms", servers[:2], filepath.Join(dir, "a.json")))
	first := s.source.Running().Pid()

	reload(source(t, "peak_ewma", "200ms", servers, filepath.Join(dir, "b.json")))
	second := s.source.Running().Pid()
	if got := endpoints(); got != "server1,server2,server3" {
		t.Fatalf("endpoints %s from the second plugin", got)
	}
	testtools.WaitFor(t, "the replaced plugin to end", func() bool { return procstate.Ended(first) })
	testtools.WaitFor(t, "calls to reach server3 again", func() bool { return servers[2].Calls() > s3 })

	reload(source(t, "round_robin", "1s", servers[:2], ""))
	if s.source != nil {
		t.Fatal("a plugin source is left after moving to a static list")
	}
	testtools.WaitFor(t, "the last plugin to end", func() bool { return procstate.Ended(second) })

	calls, failed, firstErr := stop()
	t.Logf("%d calls through 5 reloads, %d failed", calls, failed)
	if failed != 0 {
		t.Fatalf("%d of %d calls failed through the reloads; the first: %v", failed, calls, firstErr)
	}
	s.Close()
}

// A reload that cannot be done changes nothing: a discovery plugin that
// cannot start leaves the old one following the service, and a client
// setting that cannot be used leaves the strategy as it was.
func TestReloadRefusedKeepsTheRunningService(t *testing.T) {
	servers := testtools.DemoServers(t, 3)
	dir := t.TempDir()
	host := discovery.NewHost(&discovery.Finder{Dirs: []string{pluginDir}}, nil)
	defer host.Close()
	ctx := context.Background()
	a := filepath.Join(dir, "a.json")
	cfg := source(t, "round_robin", "1s", servers[:2], a)
	s, err := New(ctx, serviceOf(t, cfg), Options{Host: host, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	missing := source(t, "least_connections", "1s", servers, filepath.Join(dir, "b.json"))
	if err := os.Remove(filepath.Join(dir, "b.json")); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(ctx, serviceOf(t, missing), Options{Config: missing}); err == nil {
		t.Fatal("a plugin that cannot read its file was accepted")
	}
	if got := s.Balancer.GetServerStats().Strategy; got != "round_robin" {
		t.Fatalf("strategy %s after a refused reload", got)
	}
	// The old plugin still follows the service.
	source(t, "round_robin", "1s", servers, a)
	testtools.WaitFor(t, "the old plugin to find server3", func() bool { return len(s.Balancer.Endpoints()) == 3 })

	next := source(t, "least_connections", "1s", servers, a)
	noCA := *serviceOf(t, next)
	noCA.Client.TLS = &tlsfiles.Config{CAFile: filepath.Join(dir, "missing-ca.pem")}
	renamed := *serviceOf(t, next)
	renamed.Name = "other"
	if err := s.Reload(ctx, serviceOf(t, next), Options{Config: next, HealthChecks: true}); err == nil {
		t.Fatal("a reload that would turn health checks on was accepted")
	}
	for what, svc := range map[string]*config.Service{"a CA file that does not exist": &noCA, "another service's name": &renamed} {
		if err := s.Reload(ctx, svc, Options{Config: next}); err == nil {
			t.Fatalf("a reload with %s was accepted", what)
		}
		if got := s.Balancer.GetServerStats().Strategy; got != "round_robin" {
			t.Fatalf("strategy %s after a refused reload with %s", got, what)
		}
	}
	if err := s.Reload(ctx, serviceOf(t, next), Options{Config: next}); err != nil {
		t.Fatal(err)
	}
	if got := s.Balancer.GetServerStats().Strategy; got != "least_connections" {
		t.Fatalf("strategy %s after a good reload", got)
	}
}
