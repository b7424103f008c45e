package discovery_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"go.uber.org/goleak"

	"github.com/peervault/pvlb/internal/testtools/procstate"
	"github.com/peervault/pvlb/pkg/config"
	"github.com/peervault/pvlb/pkg/demoserver"
	"github.com/peervault/pvlb/pkg/discovery"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/pluginapi"
	"github.com/peervault/pvlb/pkg/rpc"
	pb "github.com/peervault/pvlb/proto/peervault/v1"
)

// pluginDir holds real plugin executables, built once for the package:
// the example file provider and misbehaving ones from testdata.
var pluginDir string

func TestMain(m *testing.M) {
	if path := os.Getenv(hostChildEnv); path != "" {
		runHostChild(path)
	}
	dir, err := os.MkdirTemp("", "pvlb-plugins")
	if err != nil {
		panic(err)
	}
	pluginDir = dir
	builds := map[string]string{
		"file":      "../../examples/plugins/file",
		"exit":      "./testdata/plugins/exit",
		"garbage":   "./testdata/plugins/garbage",
		"protocol2": "./testdata/plugins/protocol2",
		"hang":      "./testdata/plugins/hang",
		"nonsense":  "./testdata/plugins/nonsense",
	}
	for kind, pkg := range builds {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, pluginapi.ExecutablePrefix+kind), pkg).CombinedOutput()
		if err != nil {
			panic(fmt.Sprintf("build %s: %v\n%s", pkg, err, out))
		}
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

func newHost(t *testing.T) *discovery.Host {
	t.Helper()
	h := discovery.NewHost(&discovery.Finder{Dirs: []string{pluginDir}}, nil)
	t.Cleanup(h.Close)
	return h
}

// endpointsFile writes a file plugin's JSON and returns its path.
func writeEndpoints(t testing.TB, path string, ports ...int) {
	t.Helper()
	var list []map[string]any
	for i, p := range ports {
		list = append(list, map[string]any{"id": fmt.Sprintf("server%d", i+1), "address": "127.0.0.1", "port": p, "weight": 1})
	}
	b, _ := json.Marshal(map[string]any{"peervault": list})
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func fileSettings(path string) pluginapi.Settings {
	b, _ := json.Marshal(map[string]string{"path": path})
	return pluginapi.NewSettings(b)
}

func newLB(t testing.TB) *lb.LoadBalancer {
	cfg := lb.DefaultLoadBalancerConfig()
	cfg.Service = "peervault"
	b, err := lb.NewLoadBalancer(cfg, nil)
	if err != nil {
		panic(err) // the default configuration is valid
	}
	return b
}

func ports(b *lb.LoadBalancer) string {
	var out []string
	for _, e := range b.Endpoints() {
		out = append(out, fmt.Sprint(e.Port))
	}
	return strings.Join(out, ",")
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFileChangesReachTheBalancerWithinASecond(t *testing.T) {
	path := filepath.Join(t.TempDir(), "endpoints.json")
	writeEndpoints(t, path, 50051, 50052)
	balancer := newLB(t)
	src, err := newHost(t).Follow(context.Background(), "file", "", fileSettings(path), "peervault", balancer)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if got := ports(balancer); got != "50051,50052" {
		t.Fatalf("initial endpoints %s", got)
	}
	writeEndpoints(t, path, 50051, 50052, 50053)
	waitFor(t, "the third endpoint", time.Second, func() bool { return ports(balancer) == "50051,50052,50053" })
	writeEndpoints(t, path, 50053)
	waitFor(t, "the shrink to one endpoint", time.Second, func() bool { return ports(balancer) == "50053" })
	if v := src.Running().Version; v != pluginapi.ProtocolVersion {
		t.Fatalf("negotiated protocol %d", v)
	}
}

// TestCrashKeepsEndpointsAndRestarts kills -9 the plugin while RPCs flow
// through the balancer to real servers: none fails, the plugin comes back,
// and later changes flow again.
func TestCrashKeepsEndpointsAndRestarts(t *testing.T) {
	var serverPorts []int
	for i := range 2 {
		s, err := demoserver.Start("127.0.0.1:0", demoserver.Config{Name: fmt.Sprintf("server%d", i+1)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Stop()
		_, port, _ := net.SplitHostPort(s.Addr())
		p, _ := strconv.Atoi(port)
		serverPorts = append(serverPorts, p)
	}
	path := filepath.Join(t.TempDir(), "endpoints.json")
	writeEndpoints(t, path, serverPorts...)
	balancer := newLB(t)
	src, err := newHost(t).Follow(context.Background(), "file", "", fileSettings(path), "peervault", balancer)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	client, err := rpc.NewLoadBalancedClient(balancer, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	stub := pb.NewPeerVaultServiceClient(client)

	var calls, failures atomic.Int64
	var lastServer atomic.Value
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := stub.GetUserData(context.Background(), &pb.GetUserDataRequest{UserId: "u"})
			if err != nil {
				failures.Add(1)
				continue
			}
			calls.Add(1)
			lastServer.Store(resp.GetServer())
		}
	}()
	waitFor(t, "calls to flow", 5*time.Second, func() bool { return calls.Load() > 10 })
	pid := src.Running().Pid()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the plugin to be restarted", 10*time.Second, func() bool { return src.Stats().Restarts >= 1 })
	// A later change flows: only server2 stays.
	writeEndpoints(t, path, serverPorts[1])
	waitFor(t, "a change after the restart", 5*time.Second, func() bool { return ports(balancer) == fmt.Sprint(serverPorts[1]) })
	before := calls.Load()
	waitFor(t, "calls after the change", 5*time.Second, func() bool { return calls.Load() > before+10 })
	close(stop)
	<-done
	if failures.Load() != 0 {
		t.Fatalf("%d of %d calls failed around the plugin crash", failures.Load(), calls.Load()+failures.Load())
	}
	if got := lastServer.Load(); got != "server2" {
		t.Fatalf("after the change calls went to %v", got)
	}
	if src.Running().Pid() == pid {
		t.Fatal("still the killed process")
	}
}

func TestNoPluginProcessLeftAfterClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "endpoints.json")
	writeEndpoints(t, path, 50051)
	host := discovery.NewHost(&discovery.Finder{Dirs: []string{pluginDir}}, nil)
	src, err := host.Follow(context.Background(), "file", "", fileSettings(path), "peervault", newLB(t))
	if err != nil {
		t.Fatal(err)
	}
	pid := src.Running().Pid()
	src.Close()
	host.Close()
	waitFor(t, "the plugin process to end", 5*time.Second, func() bool {
		return syscall.Kill(pid, 0) != nil
	})
}

func TestStartFailuresAreClearErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "endpoints.json")
	writeEndpoints(t, path, 50051)
	host := newHost(t)
	host.ConfigureTimeout = 500 * time.Millisecond
	file, _ := host.Finder().Find("file")
	sum, err := file.Checksum()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		kind, pin string
		settings  pluginapi.Settings
		want      string
	}{
		{"file", strings.Repeat("ab", 32), fileSettings(path), "does not match the pinned checksum"},
		{"file", "xyz", fileSettings(path), "is not 64 hex digits"},
		{"nope", "", fileSettings(path), `no plugin for discovery kind "nope": looked for an executable pvlb-discovery-nope in ` + pluginDir},
		{"exit", "", fileSettings(path), "exited before completing the plugin handshake"},
		{"garbage", "", fileSettings(path), "printed something other than the plugin handshake"},
		{"protocol2", "", fileSettings(path), "speaks another plugin protocol than this pvlb (1)"},
		{"hang", "", fileSettings(path), "did not finish Configure within 500ms"},
		{"file", "", fileSettings(filepath.Join(t.TempDir(), "missing.json")), "configure: path: read endpoints: open"},
		{"file", sum, pluginapi.NewSettings([]byte(`{"path":"` + path + `"}`)), ""}, // the right pin works
	}
	for _, c := range cases {
		t.Run(c.kind+"/"+c.want, func(t *testing.T) {
			start := time.Now()
			src, err := host.Follow(context.Background(), c.kind, c.pin, c.settings, "peervault", newLB(t))
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				src.Close()
				return
			}
			if err == nil {
				src.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q lacks %q", err, c.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("took %s to fail", d)
			}
		})
	}
	var nf *discovery.NotFoundError
	if _, err := host.Launch(context.Background(), "nope", ""); !errors.As(err, &nf) {
		t.Fatalf("missing plugin error %T", err)
	}
}

func TestSchemaDecodesAndChecksTheBlock(t *testing.T) {
	host := newHost(t)
	r, err := host.Launch(context.Background(), "file", "")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Kill()
	schema, err := r.Provider.SchemaErr(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	parse := func(src string) hcl.Body {
		f, diags := hclsyntax.ParseConfig([]byte(src), "test.hcl", hcl.InitialPos)
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		return f.Body
	}
	settings, diags := discovery.DecodeSettings(parse(`path = "/tmp/endpoints.json"`), schema, nil)
	if diags.HasErrors() || string(settings.JSON()) != `{"path":"/tmp/endpoints.json"}` {
		t.Fatalf("settings %s, %v", settings.JSON(), diags)
	}
	for src, want := range map[string]string{
		`paht = "x"`:        `test.hcl:1,1-5: Unsupported argument; An argument named "paht" is not expected here. Did you mean "path"?`,
		``:                  `Missing required argument; The argument "path" is required`,
		`path = ["a", "b"]`: `test.hcl:1,8-18: Incorrect attribute value type`,
	} {
		_, diags := discovery.DecodeSettings(parse(src), schema, nil)
		var all []string
		for _, d := range diags {
			all = append(all, (hcl.Diagnostics{d}).Error())
		}
		if !diags.HasErrors() || !strings.Contains(strings.Join(all, "\n"), want) {
			t.Errorf("%q: %v, want %q", src, diags, want)
		}
	}
}

func TestFinderSearchOrderAndBundled(t *testing.T) {
	other := t.TempDir()
	f := &discovery.Finder{
		Dirs:    []string{other, pluginDir},
		Bundled: map[string][]string{"etcd": {"internal-plugin", "etcd"}, "file": {"internal-plugin", "file"}},
		Self:    "/usr/local/bin/pvlb",
	}
	etcd, err := f.Find("etcd")
	if err != nil || !etcd.Bundled || etcd.Path != "/usr/local/bin/pvlb" {
		t.Fatalf("etcd = %+v, %v", etcd, err)
	}
	file, err := f.Find("file")
	if err != nil || file.Bundled || !file.Overrides || file.Path != filepath.Join(pluginDir, "pvlb-discovery-file") {
		t.Fatalf("an external plugin should override the bundled kind: %+v, %v", file, err)
	}
	var kinds []string
	for _, p := range f.List() {
		kinds = append(kinds, p.Kind)
	}
	if got := strings.Join(kinds, ","); got != "etcd,exit,file,garbage,hang,nonsense,protocol2" {
		t.Fatalf("list = %s", got)
	}
	t.Setenv(discovery.PluginPathEnv, "/a"+string(filepath.ListSeparator)+"/b")
	dirs := discovery.SearchPath("/conf")
	if len(dirs) < 4 || dirs[0] != "/conf" || dirs[1] != "/a" || dirs[2] != "/b" || !strings.HasSuffix(dirs[len(dirs)-1], filepath.Join(".pvlb", "plugins")) {
		t.Fatalf("search path %v", dirs)
	}
}

// Snapshots that make no sense are skipped; the balancer keeps the last
// good one until a good one comes.
func TestNonsenseSnapshotsAreSkipped(t *testing.T) {
	balancer := newLB(t)
	src, err := newHost(t).Follow(context.Background(), "nonsense", "", pluginapi.NewSettings([]byte("{}")), "peervault", balancer)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	waitFor(t, "the good snapshot after the nonsense", 5*time.Second, func() bool { return ports(balancer) == "50052" })
	if err := src.Stats().LastErr; err == nil || !strings.Contains(err.Error(), "snapshot from the plugin") {
		t.Fatalf("last error %v", err)
	}
}

// The value of a setting its plugin declares sensitive is a secret from
// then on, written literally or not: config.Redact hides it, so nothing
// pvlb prints shows it.
func TestSensitiveSettingsBecomeSecrets(t *testing.T) {
	schema := pluginapi.Schema{Attributes: []pluginapi.Attribute{
		{Name: "token", Type: pluginapi.String, Sensitive: true},
		{Name: "address", Type: pluginapi.String},
	}}
	f, diags := hclsyntax.ParseConfig([]byte(`
token   = "literal-token-1234"
address = "consul.internal:8500"
`), "test.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if _, diags := discovery.DecodeSettings(f.Body, schema, config.EvalContext()); diags.HasErrors() {
		t.Fatal(diags)
	}
	got := config.Redact("token literal-token-1234 for consul.internal:8500")
	if want := "token " + config.Redacted + " for consul.internal:8500"; got != want {
		t.Fatalf("redacted %q, want %q", got, want)
	}
}

// A plugin stopped with SIGSTOP answers nothing, not even go-plugin's
// request to shut down; Close still returns within StopTimeout or so, and
// the process is gone.
func TestCloseReturnsWhenThePluginHangs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "endpoints.json")
	writeEndpoints(t, path, 50051)
	host := discovery.NewHost(&discovery.Finder{Dirs: []string{pluginDir}}, nil)
	src, err := host.Follow(context.Background(), "file", "", fileSettings(path), "peervault", newLB(t))
	if err != nil {
		t.Fatal(err)
	}
	pid := src.Running().Pid()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() {
		src.Close()
		host.Close()
		close(closed)
	}()
	waitFor(t, "Close to return", 3*discovery.StopTimeout, func() bool {
		select {
		case <-closed:
			return true
		default:
			return false
		}
	})
	waitFor(t, "the plugin process to end", 5*time.Second, func() bool { return procstate.Ended(pid) })
}

// A plugin that stops answering is noticed by the liveness check, killed
// and started again, and the balancer keeps its endpoints meanwhile.
func TestAHungPluginIsRestarted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "endpoints.json")
	writeEndpoints(t, path, 50051, 50052)
	host := newHost(t)
	host.LivenessInterval, host.LivenessTimeout = 50*time.Millisecond, 200*time.Millisecond
	balancer := newLB(t)
	src, err := host.Follow(context.Background(), "file", "", fileSettings(path), "peervault", balancer)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	pid := src.Running().Pid()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the hung plugin to be restarted", 10*time.Second, func() bool {
		r := src.Running()
		return src.Stats().Restarts >= 1 && r != nil && r.Pid() != pid
	})
	if got := ports(balancer); got != "50051,50052" {
		t.Fatalf("endpoints %s while the plugin was hung, want both kept", got)
	}
	if err := src.Stats().LastErr; err == nil || !strings.Contains(err.Error(), "liveness") {
		t.Fatalf("last error %v, want the liveness check's", err)
	}
	waitFor(t, "the hung process to end", 5*time.Second, func() bool { return procstate.Ended(pid) })
	// The new plugin follows changes.
	writeEndpoints(t, path, 50053)
	waitFor(t, "a change after the restart", 5*time.Second, func() bool { return ports(balancer) == "50053" })
}

// A plugin ends with the program that started it, even when that program
// is killed outright and never stops it: the test binary starts a host in
// a child process, which is then SIGKILLed.
func TestPluginEndsWithItsHost(t *testing.T) {
	path := filepath.Join(t.TempDir(), "endpoints.json")
	writeEndpoints(t, path, 50051)
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), hostChildEnv+"="+path, "PVLB_TEST_PLUGIN_DIR="+pluginDir)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Fscan(out, &pid); err != nil {
		_ = child.Process.Kill()
		t.Fatalf("reading the plugin's pid from the child: %v", err)
	}
	if procstate.Ended(pid) {
		t.Fatalf("plugin %d is not running", pid)
	}
	_ = child.Process.Kill()
	_ = child.Wait()
	waitFor(t, "the orphaned plugin to end", 5*time.Second, func() bool { return procstate.Ended(pid) })
}

// hostChildEnv makes the test binary a program that follows the file
// plugin, prints its pid and waits to be killed (TestPluginEndsWithItsHost).
const hostChildEnv = "PVLB_TEST_HOST_CHILD"

func runHostChild(path string) {
	host := discovery.NewHost(&discovery.Finder{Dirs: []string{os.Getenv("PVLB_TEST_PLUGIN_DIR")}}, nil)
	src, err := host.Follow(context.Background(), "file", "", fileSettings(path), "peervault", newLB(nil))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println(src.Running().Pid())
	select {}
}
