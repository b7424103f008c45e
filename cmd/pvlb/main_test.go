package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rogpeppe/go-internal/testscript"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/pkg/config"
)

// pluginsDir holds the example file plugin and one that exits at once,
// built once, for scripts that put $PLUGINS on the plugin path.
var pluginsDir string

// pvlbBinary is pvlb built from this package, with no plugin beside it.
var pvlbBinary string

func TestMain(m *testing.M) {
	testscript.Main(&pluginBuild{m}, map[string]func(){
		"pvlb": func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

// pluginBuild builds the example plugin before the tests, only in the test
// process itself (testscript re-runs this binary as pvlb).
type pluginBuild struct{ m *testing.M }

func (b *pluginBuild) Run() int {
	dir, err := os.MkdirTemp("", "pvlb-script-plugins")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	for name, pkg := range map[string]string{
		"pvlb-discovery-file": "../../examples/plugins/file",
		"pvlb-discovery-exit": "../../pkg/discovery/testdata/plugins/exit",
		// pvlb itself, in a directory of its own (it finds plugins beside
		// it), for tests that need it as its own process.
		"bin/pvlb": ".",
	} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg).CombinedOutput()
		if err != nil {
			panic(fmt.Sprintf("build %s: %v\n%s", pkg, err, out))
		}
	}
	pluginsDir = dir
	pvlbBinary = filepath.Join(dir, "bin", "pvlb")
	return b.m.Run()
}

// TestScripts runs testscripts/*.txtar. Each script starts in a work
// directory holding a copy of examples/, so paths in output are stable.
// UPDATE_SCRIPTS=1 rewrites the golden sections from actual output.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 filepath.Join("..", "..", "testscripts"),
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		UpdateScripts:       os.Getenv("UPDATE_SCRIPTS") != "",
		Setup: func(env *testscript.Env) error {
			env.Setenv("NO_COLOR", "1")
			env.Setenv("PLUGINS", pluginsDir)
			if err := os.CopyFS(filepath.Join(env.WorkDir, "proto"), os.DirFS(filepath.Join("..", "..", "proto"))); err != nil {
				return err
			}
			readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(env.WorkDir, "README.md"), readme, 0o644); err != nil {
				return err
			}
			return os.CopyFS(filepath.Join(env.WorkDir, "examples"), os.DirFS(filepath.Join("..", "..", "examples")))
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitaddr": waitAddr,
			"readme":   readmeCmd,
			"etcd":     etcdCmd,
			"consul":   consulCmd,
			"kube":     kubeCmd,
			"coredns":  corednsCmd,
		},
	})
}

// readmeCmd: "readme shows FILE" checks that the README quotes FILE's text
// exactly, so the output it shows is the output pvlb gives.
func readmeCmd(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 || args[0] != "shows" {
		ts.Fatalf("usage: readme shows FILE")
	}
	readme := ts.ReadFile("README.md")
	want := ts.ReadFile(args[1])
	if !strings.Contains(readme, want) {
		ts.Fatalf("README.md does not show %s as pvlb prints it:\n%s", args[1], want)
	}
}

// waitAddr VAR FILE waits (at most 10s) for a demo server's --addr-file and
// sets VAR to the address in it.
func waitAddr(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: waitaddr VAR FILE")
	}
	path := ts.MkAbs(args[1])
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil && len(b) > 0 {
			ts.Setenv(args[0], strings.TrimSpace(string(b)))
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("no address in %s after 10s", args[1])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// etcdCmd: "etcd start" runs a real etcd for the script and sets
// $ETCD_ENDPOINT; "etcd put KEY VALUE" writes a key.
func etcdCmd(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: etcd start | etcd put KEY VALUE")
	}
	switch {
	case args[0] == "start" && len(args) == 1:
		e := testtools.StartEtcd(scriptTB{ts})
		ts.Setenv("ETCD_ENDPOINT", e.Endpoint())
	case args[0] == "put" && len(args) == 3:
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{ts.Getenv("ETCD_ENDPOINT")}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		ts.Check(err)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = c.Put(ctx, args[1], args[2])
		ts.Check(err)
	default:
		ts.Fatalf("usage: etcd start | etcd put KEY VALUE")
	}
}

// corednsCmd: "coredns start RECORD..." runs a real CoreDNS serving
// testtools.Zone with the records (zone file lines, quoted) and sets
// $DNS_SERVER.
func corednsCmd(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 || args[0] != "start" {
		ts.Fatalf("usage: coredns start RECORD...")
	}
	c := testtools.StartCoreDNS(scriptTB{ts}, args[1:]...)
	ts.Setenv("DNS_SERVER", c.Addr())
}

// scriptTB lets testtools run servers for a testscript.
type scriptTB struct{ ts *testscript.TestScript }

func (s scriptTB) Helper()                           {}
func (s scriptTB) Fatalf(format string, args ...any) { s.ts.Fatalf(format, args...) }
func (s scriptTB) Skipf(format string, args ...any)  { s.ts.Fatalf(format, args...) }
func (s scriptTB) Cleanup(f func())                  { s.ts.Defer(f) }
func (s scriptTB) TempDir() string {
	dir, err := os.MkdirTemp(s.ts.Getenv("WORK"), "tool")
	s.ts.Check(err)
	return dir
}

// consulCmd: "consul start" runs a real Consul agent for the script and
// sets $CONSUL_ADDR; "consul register ID PORT WEIGHT [critical]" registers
// a peervault instance with a TTL check.
func consulCmd(ts *testscript.TestScript, neg bool, args []string) {
	switch {
	case !neg && len(args) == 1 && args[0] == "start":
		c := testtools.StartConsul(scriptTB{ts})
		ts.Setenv("CONSUL_ADDR", c.Address())
	case !neg && len(args) >= 4 && args[0] == "register":
		cfg := api.DefaultConfig()
		cfg.Address = ts.Getenv("CONSUL_ADDR")
		client, err := api.NewClient(cfg)
		ts.Check(err)
		port, err := strconv.Atoi(args[2])
		ts.Check(err)
		weight, err := strconv.Atoi(args[3])
		ts.Check(err)
		status := api.HealthPassing
		if len(args) == 5 && args[4] == "critical" {
			status = api.HealthCritical
		}
		ts.Check(client.Agent().ServiceRegister(&api.AgentServiceRegistration{
			ID: args[1], Name: "peervault", Address: "127.0.0.1", Port: port,
			Weights: &api.AgentWeights{Passing: weight, Warning: 1},
			Check:   &api.AgentServiceCheck{CheckID: "ttl-" + args[1], TTL: "1h", Status: status},
		}))
	default:
		ts.Fatalf("usage: consul start | consul register ID PORT WEIGHT [critical]")
	}
}

// kubeCmd: "kube start" runs a real kube-apiserver (with etcd) for the
// script and writes $WORK/kubeconfig for an administrator; "kube slice
// NAME SERVICE PORT ADDR..." creates an EndpointSlice of ready endpoints,
// each backed by a pod named SERVICE-<last part of ADDR>.
func kubeCmd(ts *testscript.TestScript, neg bool, args []string) {
	switch {
	case !neg && len(args) == 1 && args[0] == "start":
		k := testtools.StartKube(scriptTB{ts})
		b, err := os.ReadFile(k.Kubeconfig("admin", "system:masters"))
		ts.Check(err)
		ts.Check(os.WriteFile(ts.MkAbs("kubeconfig"), b, 0o600))
	case !neg && len(args) >= 5 && args[0] == "slice":
		cfg, err := clientcmd.BuildConfigFromFlags("", ts.MkAbs("kubeconfig"))
		ts.Check(err)
		client, err := kubernetes.NewForConfig(cfg)
		ts.Check(err)
		port, err := strconv.Atoi(args[3])
		ts.Check(err)
		p32 := int32(port)
		sl := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: args[1], Labels: map[string]string{discoveryv1.LabelServiceName: args[2]}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Port: &p32}},
		}
		ready := true
		for _, addr := range args[4:] {
			// Pods are named after the address's last part: 192.0.2.3 is web-3.
			name := args[2] + "-" + addr[strings.LastIndexAny(addr, ".:")+1:]
			sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{addr},
				Conditions: discoveryv1.EndpointConditions{Ready: &ready},
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: name},
			})
		}
		_, err = client.DiscoveryV1().EndpointSlices("default").Create(context.Background(), sl, metav1.CreateOptions{})
		ts.Check(err)
	default:
		ts.Fatalf("usage: kube start | kube slice NAME SERVICE PORT ADDR...")
	}
}

// A secret (a setting its plugin declares sensitive) never reaches the
// terminal, wherever pvlb would print it.
func TestSecretsAreRedactedInEverythingPrinted(t *testing.T) {
	const secret = "planted-secret-value"
	config.AddSecret(secret)
	var stdout, stderr strings.Builder
	status := Main([]string{"validate", "-c", filepath.Join(t.TempDir(), secret+".hcl")}, &stdout, &stderr)
	if status != 1 {
		t.Fatalf("status %d, want 1; stderr:\n%s", status, stderr.String())
	}
	if out := stdout.String() + stderr.String(); strings.Contains(out, secret) || !strings.Contains(out, config.Redacted) {
		t.Fatalf("output shows the secret, or no redaction:\n%s", out)
	}
}

// No input, however large or strange, crashes validate or floods the
// terminal: each gets exit 1 and a short, located answer without control
// characters or a Go stack trace.
func TestAdversarialInputIsBounded(t *testing.T) {
	random := make([]byte, 5000)
	for i := range random {
		random[i] = byte(i*7919 + i/3)
	}
	var many strings.Builder
	for i := range 60 {
		fmt.Fprintf(&many, "strategy \"s%d\" { kind = \"nope%d\" }\n", i, i)
	}
	cases := map[string]string{
		"nested 100,000 deep":   "x = " + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + "\n",
		"nested in a template":  `x = "` + strings.Repeat("${[", 200) + "\n",
		"10 MB":                 "# " + strings.Repeat("a", 10<<20) + "\n",
		"random bytes":          string(random),
		"a 1.5 MB line":         `service "s" { discovery = ` + strings.Repeat("x", 1500000) + " }\n",
		"control characters":    "service \"s\x1b[31m\" { discovery = \"\x07\x1b]0;title\x07\" }\n",
		"sixty errors":          many.String(),
		"NUL bytes":             "service \"s\" {\x00\x00 }\n",
		"unterminated heredoc":  "x = <<EOF\n" + strings.Repeat("[", 1000),
		"unbalanced closings":   strings.Repeat("}", 1000),
		"a very long name":      `service "` + strings.Repeat("n", 100000) + `" {}` + "\n",
		"a very long string":    `strategy "s" { kind = "` + strings.Repeat("k", 100000) + `" }` + "\n",
		"deep function calls":   "x = " + strings.Repeat("upper(", 5000) + `"a"` + strings.Repeat(")", 5000) + "\n",
		"deep object nesting":   "x = " + strings.Repeat("{a = ", 5000) + "1" + strings.Repeat("}", 5000) + "\n",
		"deep block nesting":    strings.Repeat("b {\n", 5000) + strings.Repeat("}\n", 5000),
		"deep unary operators":  "x = " + strings.Repeat("!", 100000) + "true\n",
		"deep binary operators": "x = 1" + strings.Repeat(" + 1", 100000) + "\n",
	}
	for name, src := range cases {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "c.hcl")
			if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr strings.Builder
			status := Main([]string{"validate", "-c", file}, &stdout, &stderr)
			out := stdout.String() + stderr.String()
			if status != 1 {
				t.Errorf("status %d, want 1", status)
			}
			if len(out) > 32<<10 {
				t.Errorf("printed %d bytes", len(out))
			}
			if strings.ContainsAny(out, "\x00\x07\x1b") || strings.Contains(out, "goroutine ") {
				t.Errorf("control characters or a stack trace in:\n%.2000s", out)
			}
			if !strings.Contains(out, "c.hcl") {
				t.Errorf("the answer does not name the file:\n%.2000s", out)
			}
		})
	}
}
