package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/policy"
	"github.com/peervault/pvlb/pkg/statuscode"
	"github.com/peervault/pvlb/pkg/tlsfiles"
)

const examples = "../../examples"

func TestValidExamplesLoadCleanly(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(examples, "*.hcl"))
	if len(files) < 4 {
		t.Fatalf("found only %d examples", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, diags := Load(f)
			if len(diags) > 0 {
				t.Fatalf("diagnostics: %v", diags)
			}
			if len(cfg.Services) == 0 {
				t.Fatal("no services")
			}
			for _, s := range cfg.Services {
				if _, err := lb.New(s.BalancerConfig(), nil); err != nil {
					t.Fatalf("service %s: lb rejects the decoded config: %v", s.Name, err)
				}
			}
		})
	}
}

// wantRE reads an invalid example's expectation: "# want: LINE:COL summary: text".
var wantRE = regexp.MustCompile(`(?m)^# want: (\d+):(\d+) ([^:]+): (.+)$`)

func TestInvalidExamplesPointAtTheirMistake(t *testing.T) {
	os.Unsetenv("PVLB_EXAMPLE_UNSET_TOKEN")
	files, _ := filepath.Glob(filepath.Join(examples, "invalid", "*.hcl"))
	if len(files) < 10 {
		t.Fatalf("found only %d invalid examples", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(src), "# checked by: pvlb validate") {
				t.Skip("needs pvlb validate's plugin phase; covered by testscripts")
			}
			m := wantRE.FindSubmatch(src)
			if m == nil {
				t.Fatal("example lacks a '# want: LINE:COL Summary: detail' line")
			}
			line, _ := strconv.Atoi(string(m[1]))
			col, _ := strconv.Atoi(string(m[2]))
			summary, detail := string(m[3]), string(m[4])
			_, diags := Load(f)
			if !diags.HasErrors() {
				t.Fatal("loaded without errors")
			}
			errs := errorsOf(diags)
			if len(errs) != 1 {
				t.Errorf("want exactly one error, got %d: %v", len(errs), errs)
			}
			d := errs[0]
			if d.Subject == nil {
				t.Fatalf("diagnostic %q has no source range", d.Summary)
			}
			if d.Subject.Start.Line != line || d.Subject.Start.Column != col {
				t.Errorf("diagnostic at %d:%d, want %d:%d (%s)", d.Subject.Start.Line, d.Subject.Start.Column, line, col, d.Summary)
			}
			if d.Summary != summary {
				t.Errorf("summary %q, want %q", d.Summary, summary)
			}
			if !strings.Contains(d.Detail, detail) {
				t.Errorf("detail %q lacks %q", d.Detail, detail)
			}
		})
	}
}

func errorsOf(diags hcl.Diagnostics) hcl.Diagnostics {
	var out hcl.Diagnostics
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			out = append(out, d)
		}
	}
	return out
}

func load(t *testing.T, src string) (*Config, hcl.Diagnostics) {
	t.Helper()
	return NewLoader().LoadSources(map[string][]byte{"test.hcl": []byte(src)})
}

func TestDefaultsMatchTheOriginalDesign(t *testing.T) {
	cfg, diags := load(t, `
discovery "static" "local" {
  endpoint "a" { address = "127.0.0.1:1" }
}
service "svc" { discovery = discovery.static.local }
`)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	s, _ := cfg.Service("svc")
	seed := lb.DefaultLoadBalancerConfig()
	seed.Service = "svc"
	if got, want := s.BalancerConfig(), seed.Config(); got.Service != want.Service || got.Strategy != want.Strategy ||
		got.Sticky.Enabled != want.Sticky.Enabled || got.Sticky.TTL != want.Sticky.TTL {
		t.Errorf("balancer config\n got %+v\nwant %+v", got, want)
	}
	if s.Strategy.Sticky.Key != lb.DefaultSessionKey {
		t.Errorf("session key %q", s.Strategy.Sticky.Key)
	}
	wantHealth := policy.HealthCheck{Interval: seed.HealthCheckInterval, Timeout: seed.HealthCheckTimeout,
		UnhealthyThreshold: seed.UnhealthyThreshold, HealthyThreshold: seed.HealthyThreshold}
	if s.Health.HealthCheck != wantHealth {
		t.Errorf("health %+v, want %+v", s.Health.HealthCheck, wantHealth)
	}
	if !reflect.DeepEqual(s.Retry, policy.DefaultRetry()) || s.Retry.MaxRetries != seed.MaxRetries || s.Retry.Delay != seed.RetryDelay || s.Retry.FailoverTimeout != seed.FailoverTimeout {
		t.Errorf("retry %+v", s.Retry)
	}
	if !reflect.DeepEqual(s.Client, policy.DefaultClient()) {
		t.Errorf("client %+v", s.Client)
	}
	if s.Outcomes != (lb.OutcomeConfig{}) {
		t.Errorf("outcomes %+v, want the defaults", s.Outcomes)
	}
}

func TestAdvancedExampleDecodesEverySetting(t *testing.T) {
	cfg, diags := Load(filepath.Join(examples, "advanced.hcl"))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	s, _ := cfg.Service("peervault")
	want := lb.Config{
		Service:  "peervault",
		Strategy: lb.StrategyConfig{Kind: "weighted"},
		Sticky:   lb.StickyConfig{Enabled: true, TTL: 10 * time.Minute, Key: "session-id"},
		Outcomes: lb.OutcomeConfig{FailureCodes: lb.DefaultFailureCodes | statuscode.SetOf(statuscode.ResourceExhausted)},
	}
	if got := s.BalancerConfig(); got != want {
		t.Errorf("balancer config\n got %+v\nwant %+v", got, want)
	}
	if want := (policy.HealthCheck{Interval: 15 * time.Second, Timeout: 3 * time.Second, UnhealthyThreshold: 3, HealthyThreshold: 2, Service: "peervault.PeerVaultService"}); s.Health.HealthCheck != want {
		t.Errorf("health %+v", s.Health.HealthCheck)
	}
	budget := lb.DefaultRetryBudget()
	if want := (policy.Retry{MaxRetries: 5, Delay: 2 * time.Second, FailoverTimeout: 15 * time.Second, RetryableCodes: policy.DefaultRetryableCodes, Budget: &budget}); !reflect.DeepEqual(s.Retry, want) {
		t.Errorf("retry %+v", s.Retry)
	}
	wantClient := policy.Client{
		ConnectionTimeout: 30 * time.Second, KeepAliveInterval: 30 * time.Second, KeepAliveTimeout: 5 * time.Second,
		MaxReceiveSize: 8 << 20, MaxSendSize: 8 << 20, UserAgent: "peervault-grpc-client/1.0",
	}
	if !reflect.DeepEqual(s.Client, wantClient) {
		t.Errorf("client config\n got %+v\nwant %+v", s.Client, wantClient)
	}
	eps := s.Discovery.Endpoints
	if len(eps) != 3 || eps[0].Host != "primary.example.com" || eps[0].Port != 50051 || eps[0].Weight != 5 || eps[0].Zone != "eu-west-1a" || eps[0].Metadata["tier"] != "primary" {
		t.Errorf("endpoints decoded wrong: %+v", eps[0])
	}
	r, _ := cfg.Service("peervault_replicas")
	if len(r.Discovery.Endpoints) != 4 || r.Strategy.ChoiceCount != 2 {
		t.Errorf("replicas service decoded wrong: %+v", r)
	}
	if len(cfg.Discoveries) != 2 || len(cfg.Strategies) != 2 || len(cfg.HealthPolicies) != 1 {
		t.Errorf("counts: %d discoveries, %d strategies, %d health policies", len(cfg.Discoveries), len(cfg.Strategies), len(cfg.HealthPolicies))
	}
}

func TestDirectoryLoadsEveryFileAndResolvesAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The service refers to blocks in a file that sorts after its own.
	write("a_service.hcl", `service "svc" {
  discovery = discovery.static.local
  strategy  = strategy.w
}`)
	write("b_blocks.hcl", `strategy "w" { kind = "weighted" }
discovery "static" "local" {
  endpoint "a" {
    address = "[::1]:50051"
    weight = 2
  }
}`)
	write("notes.txt", "not configuration")
	cfg, diags := Load(dir)
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	s, _ := cfg.Service("svc")
	if s.Strategy.Kind != "weighted" || s.Discovery.Endpoints[0].Host != "::1" {
		t.Fatalf("decoded %+v", s)
	}

	empty := t.TempDir()
	if _, diags := Load(empty); !diags.HasErrors() || diags[0].Summary != "No configuration files" {
		t.Fatalf("empty directory: %v", diags)
	}
	if _, diags := Load(filepath.Join(dir, "missing.hcl")); !diags.HasErrors() || !strings.Contains(diags[0].Detail, "does not exist") {
		t.Fatalf("missing file: %v", diags)
	}
}

func TestMoreMistakes(t *testing.T) {
	base := `discovery "static" "local" {
  endpoint "a" { address = "127.0.0.1:1" }
}
`
	cases := []struct {
		name, src, summary, detail string
	}{
		{"duplicate strategy", `strategy "x" { kind = "random" }
strategy "x" { kind = "random" }`, "Duplicate strategy", "already declared at test.hcl:1"},
		{"duplicate endpoint", `discovery "static" "s" {
  endpoint "a" { address = "h:1" }
  endpoint "a" { address = "h:2" }
}`, "Duplicate endpoint", "already declared"},
		{"choice_count on round robin", `strategy "x" {
  kind = "round_robin"
  choice_count = 2
}`, "Setting not used by this strategy", "applies only"},
		{"choice_count one", `strategy "x" {
  kind = "least_connections"
  choice_count = 1
}`, "Invalid choice_count", "not 1"},
		{"two retry blocks", base + `service "s" {
  discovery = discovery.static.local
  retry { max_retries = 1 }
  retry { max_retries = 2 }
}`, "Duplicate retry block", "at most one"},
		{"wrong reference root", base + `service "s" {
  discovery = discovery.static.local
  strategy = health_policy.x
}`, "Invalid reference", "strategy.NAME"},
		{"undeclared discovery", base + `service "s" { discovery = discovery.static.locl }`, "Reference to undeclared discovery", `Did you mean "discovery.static.local"?`},
		{"negative retries", base + `service "s" {
  discovery = discovery.static.local
  retry { max_retries = -1 }
}`, "Invalid max_retries", "max_retries must be a whole number from 0 to 10, not -1."},
		{"fractional weight", `discovery "static" "d" {
  endpoint "a" {
    address = "127.0.0.1:1"
    weight  = 2.5
  }
}`, "Invalid weight", "weight must be a whole number from 1 to 65535, not 2.5."},
		{"quoted reference", base + `service "s" { discovery = "discovery.static.local" }`, "Invalid reference", "Write it without quotes: discovery = discovery.static.local"},
		{"quoted reference without its root", base + `service "s" { discovery = "static.local" }`, "Invalid reference", "Write it without quotes: discovery = discovery.static.local"},
		{"unquoted text", `strategy "s" { kind = round_robin }`, "Unquoted text", `To give the text, quote it: kind = "round_robin".`},
		{"setting in the wrong block", base + `service "s" {
  discovery   = discovery.static.local
  max_retries = 3
}`, "Unsupported argument", "max_retries belongs in a retry block inside a service, like this:"},
		{"block at the wrong level", `retry {}`, "Unsupported block type", "retry belongs in a service block"},
		{"setting in two places", `strategy "s" {
  kind     = "round_robin"
  interval = "5s"
}`, "Unsupported argument", "interval belongs in a health_policy block, or in an outlier_detection block inside a service"},
		{"typo beyond two edits", `health_policy "h" { unhealthythreshold = 3 }`, "Unsupported argument", `Did you mean "unhealthy_threshold"?`},
		{"typo with a dash", `health_policy "h" { healthy-threshold = 3 }`, "Unsupported argument", `Did you mean "healthy_threshold"?`},
		{"size at the limit", base + `service "s" {
  discovery = discovery.static.local
  client { max_receive_size = "2GiB" }
}`, "Invalid size", "2147483647 bytes (2GiB less one byte"},
		{"error rate above one", base + `service "s" { discovery = discovery.static.local }
simulation "s" {
  server "a" { error_rate = 1.5 }
}`, "Value out of range", "from 0 to 1"},
		{"bad latency model", base + `service "s" { discovery = discovery.static.local }
simulation "s" {
  server "*" { latency = "lognormal(20ms, 10ms)" }
}`, "Invalid latency model", "must exceed the median"},
		{"simulation of an unknown service", base + `service "peervault" { discovery = discovery.static.local }
simulation "peervalt" {}`, "Simulation of an undeclared service", `Did you mean "peervault"?`},
		{"bad server pattern", base + `service "s" { discovery = discovery.static.local }
simulation "s" {
  server "[a" { capacity = 4 }
}`, "Invalid server pattern", "db-*"},
		{"duplicate simulation", base + `service "s" { discovery = discovery.static.local }
simulation "s" {}
simulation "s" {}`, "Duplicate simulation of service", "already declared"},
		{"peak_ewma setting on round robin", `strategy "s" {
  kind  = "round_robin"
  decay = "5s"
}`, "Setting not used by this strategy", `decay applies only to kind = "peak_ewma"`},
		{"peak_ewma comparing nothing", `strategy "s" {
  kind         = "peak_ewma"
  choice_count = 0
}`, "Invalid choice_count", "number of endpoints or more"},
		{"bias on round robin", `strategy "s" {
  kind                = "round_robin"
  active_request_bias = 0.5
}`, "Setting not used by this strategy", `active_request_bias applies only to kind = "least_connections"`},
		{"bias out of range", `strategy "s" {
  kind                = "least_connections"
  active_request_bias = 11
}`, "Value out of range", "from 0 to 10"},
		{"slow start without a window", `strategy "s" {
  kind = "round_robin"
  slow_start { aggression = 2 }
}`, "Missing required argument", "window"},
		{"slow start on random", `strategy "s" {
  kind = "random"
  slow_start { window = "30s" }
}`, "Setting not used by this strategy", "slow_start applies"},
		{"simulate inside an endpoint", `discovery "static" "s" {
  endpoint "a" {
    address = "h:1"
    simulate { error_rate = 0.5 }
  }
}`, "Simulation settings have moved", `simulation "SERVICE"`},
		{"bad port", `discovery "static" "s" {
  endpoint "a" { address = "h:99999" }
}`, "Invalid address", "1 to 65535"},
		{"bad label", `strategy "has space" { kind = "random" }`, "Invalid name", "not a valid name"},
		{"ring size on maglev", `strategy "x" {
  kind = "maglev"
  min_ring_size = 2048
}`, "Setting not used by this strategy", `min_ring_size applies only to kind = "ring_hash"`},
		{"balance factor on round robin", `strategy "x" {
  kind = "round_robin"
  hash_balance_factor = 150
}`, "Setting not used by this strategy", `"ring_hash" and "maglev"`},
		{"ring sizes out of order", `strategy "x" {
  kind = "ring_hash"
  min_ring_size = 8192
}`, "Ring sizes out of order", "max_ring_size defaults to 4096"},
		{"table size not prime", `strategy "x" {
  kind = "maglev"
  table_size = 65536
}`, "Invalid table_size", "must be a prime"},
		{"balance factor under 100", `strategy "x" {
  kind = "maglev"
  hash_balance_factor = 90
}`, "Invalid hash_balance_factor", "from 100"},
		{"empty hash_key", `strategy "x" {
  kind = "ring_hash"
  hash_key {}
}`, "Nothing to hash", "header"},
		{"binary hash header", `strategy "x" {
  kind = "ring_hash"
  hash_key { header = "x-id-bin" }
}`, "Invalid hash_key header", "binary"},
		{"hash_key on random", `strategy "x" {
  kind = "random"
  hash_key { header = "x-id" }
}`, "Setting not used by this strategy", "hash_key applies only"},
		{"sticky with ring_hash", `strategy "x" {
  kind = "ring_hash"
  sticky_session {}
}`, "Sticky sessions with a hashing strategy", "remove sticky_session"},
		{"blackout on round robin", `strategy "x" {
  kind = "round_robin"
  blackout_period = "5s"
}`, "Setting not used by this strategy", `blackout_period applies only to kind = "weighted_round_robin"`},
		{"oob period without oob", `strategy "x" {
  kind = "weighted_round_robin"
  oob_reporting_period = "5s"
}`, "Out-of-band period without out-of-band reports", "enable_oob_load_report = true"},
		{"weight update too often", `strategy "x" {
  kind = "weighted_round_robin"
  weight_update_period = "10ms"
}`, "Invalid weight_update_period", "at least 100ms"},
		{"negative penalty", `strategy "x" {
  kind = "weighted_round_robin"
  error_utilization_penalty = -1
}`, "Value out of range", "error_utilization_penalty must be from 0"},
		{"hash_key attribute misplaced", `strategy "x" {
  kind = "ring_hash"
  header = "x-id"
}`, "Unsupported argument", "hash_key"},
		{"top-level attribute", `strategy_kind = "random"`, "Unsupported argument", "not expected here"},
		{"syntax error", `service "s" {`, "Unclosed configuration block", ""},
		{"negative size", base + `service "s" {
  discovery = discovery.static.local
  client { max_send_size = "3GiB" }
}`, "Invalid size", "2GiB"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, diags := load(t, c.src)
			for _, d := range diags {
				if d.Severity == hcl.DiagError && d.Summary == c.summary && strings.Contains(d.Detail, c.detail) {
					if d.Subject == nil {
						t.Fatalf("diagnostic has no range: %v", d)
					}
					return
				}
			}
			t.Fatalf("want error %q containing %q, got %v", c.summary, c.detail, diags)
		})
	}
}

func TestSimulationBlocks(t *testing.T) {
	cfg, diags := load(t, `discovery "static" "local" {
  endpoint "web-1" { address = "h:1" }
  endpoint "web-2" { address = "h:2" }
  endpoint "db-1" { address = "h:3" }
}
service "s" { discovery = discovery.static.local }
simulation "s" {
  server "*" {
    latency  = "20ms"
    capacity = 8
  }
  server "db-*" { error_rate = 0.1 }
  server "cache" { capacity = 1 }
}`)
	var warned bool
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			t.Fatal(diags)
		}
		warned = warned || (d.Summary == "Server pattern matches no endpoint" && strings.Contains(d.Detail, `"cache"`) && d.Subject.Start.Line == 13)
	}
	if !warned {
		t.Errorf("a pattern that matches no static endpoint gives no located warning: %v", diags)
	}
	sim, ok := cfg.Simulation("s")
	if !ok || len(sim.Servers) != 3 {
		t.Fatalf("simulation %+v", sim)
	}
	if !sim.Servers[1].Matches("db-1") || sim.Servers[1].Matches("web-1") || *sim.Servers[1].ErrorRate != 0.1 || sim.Servers[1].Latency != nil {
		t.Errorf("db-* block %+v", sim.Servers[1])
	}
}

func TestWeightsIgnoredByStrategyWarn(t *testing.T) {
	_, diags := load(t, `discovery "static" "s" {
  endpoint "a" {
    address = "h:1"
    weight = 3
  }
}
service "svc" { discovery = discovery.static.s }`)
	if diags.HasErrors() || len(diags) != 1 || diags[0].Severity != hcl.DiagWarning || diags[0].Summary != "Endpoint weights have no effect" {
		t.Fatalf("want one weights warning, got %v", diags)
	}
}

func TestEnvFunction(t *testing.T) {
	t.Setenv("PVLB_TEST_KEY", "tenant")
	cfg, diags := load(t, `strategy "s" {
  kind = "random"
  sticky_session { key = env("PVLB_TEST_KEY") }
}
strategy "d" {
  kind = "random"
  sticky_session { key = env("PVLB_TEST_SURELY_UNSET", "fallback") }
}`)
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	if k := cfg.Strategies[0].Sticky.Key; k != "tenant" {
		t.Errorf("env key = %q", k)
	}
	if k := cfg.Strategies[1].Sticky.Key; k != "fallback" {
		t.Errorf("env default = %q", k)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int{"1024": 1024, "8MiB": 8 << 20, "4MB": 4e6, "1 KiB": 1024, "0.5MiB": 512 << 10, "2gib": 0} {
		got, err := parseSize(in)
		if want == 0 {
			if err == nil {
				t.Errorf("%q: want error (over 2GiB)", in)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("%q = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "MiB", "8 megs", "-1", "1.5"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestRetryableCodesAndTLS(t *testing.T) {
	base := `discovery "static" "s" {
  endpoint "a" { address = "h:1" }
}
`
	ca, cert, key := writeTestPKI(t)
	cfg, diags := load(t, base+fmt.Sprintf(`service "svc" {
  discovery = discovery.static.s
  retry { retryable_codes = ["UNAVAILABLE", "resource_exhausted"] }
  client {
    tls {
      ca_file     = %q
      cert_file   = %q
      key_file    = %q
      server_name = "peervault.internal"
    }
  }
}`, ca, cert, key))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	s, _ := cfg.Service("svc")
	cc := s.Client
	if want := statuscode.SetOf(statuscode.Unavailable, statuscode.ResourceExhausted); s.Retry.RetryableCodes != want {
		t.Errorf("codes %v", s.Retry.RetryableCodes)
	}
	if want := (&tlsfiles.Config{CAFile: ca, CertFile: cert, KeyFile: key, ServerName: "peervault.internal"}); !reflect.DeepEqual(cc.TLS, want) {
		t.Errorf("tls %+v", cc.TLS)
	}
	for src, want := range map[string]string{
		`retry { retryable_codes = ["UNAVAILBLE"] }`:   `Did you mean "UNAVAILABLE"?`,
		`retry { retryable_codes = ["OK"] }`:           "OK is success",
		"client {\n  tls { cert_file = \"c.pem\" }\n}": "go together",
		`client {
  tls { ca_file = "a" }
  tls { ca_file = "b" }
}`: "at most one tls block",
	} {
		_, diags := load(t, base+"service \"svc\" {\n  discovery = discovery.static.s\n  "+src+"\n}")
		if !diags.HasErrors() || !strings.Contains(diags.Error(), want) {
			t.Errorf("%s: got %v, want an error with %q", src, diags, want)
		}
	}
}

func TestPluginSettings(t *testing.T) {
	cfg, diags := NewLoader().LoadSources(map[string][]byte{"/etc/pvlb/main.hcl": []byte(`
plugin_dir = "plugins"
plugin "consul" { sha256 = "` + strings.Repeat("AB", 32) + `" }
discovery "consul" "dc1" {
  address = "127.0.0.1:8500"
}
`)})
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	if cfg.PluginDir != "/etc/pvlb/plugins" {
		t.Errorf("plugin_dir %q, want it relative to the file", cfg.PluginDir)
	}
	if p, ok := cfg.Plugin("consul"); !ok || p.SHA256 != strings.Repeat("ab", 32) {
		t.Errorf("plugin block %+v", p)
	}
	d := cfg.Discoveries[0]
	if d.Kind != "consul" || d.Body == nil || d.KindRange.Start.Line != 4 {
		t.Errorf("discovery %+v", d)
	}
	_, diags = load(t, `plugin "consul" { sha256 = "abc" }`)
	if !diags.HasErrors() || diags[0].Summary != "Invalid checksum" {
		t.Errorf("short checksum: %v", diags)
	}
}

// A value from env() never appears in a message, whatever rejects it: the
// decoder, a function, or a check of its own (as Terraform's sensitive
// values).
func TestEnvValuesNeverInMessages(t *testing.T) {
	const secret = "hunter2-0xDEADBEEF"
	t.Setenv("PVLB_TEST_SECRET", secret)
	for _, src := range []string{
		`health_policy "h" { interval = env("PVLB_TEST_SECRET") }`,
		`health_policy "h" { interval = upper(env("PVLB_TEST_SECRET")) }`,
		`health_policy "h" { interval = "${env("PVLB_TEST_SECRET")}s" }`,
		`health_policy "h" { unhealthy_threshold = tonumber(env("PVLB_TEST_SECRET")) }`,
		`health_policy "h" { unhealthy_threshold = parseint(env("PVLB_TEST_SECRET"), 10) }`,
		`strategy "s" { kind = env("PVLB_TEST_SECRET") }`,
		`discovery "static" "d" {
		   endpoint "a" { address = env("PVLB_TEST_SECRET") }
		 }`,
		`discovery "static" "d" {
		   endpoint "a" { address = "127.0.0.1:${env("PVLB_TEST_SECRET")}" }
		 }`,
		`service "s" {
		   discovery = discovery.static.d
		   client { max_receive_size = env("PVLB_TEST_SECRET") }
		   outcomes { failure_codes = [env("PVLB_TEST_SECRET")] }
		 }
		 discovery "static" "d" {
		   endpoint "a" { address = "127.0.0.1:1" }
		 }
		 simulation "s" {
		   server "a" { latency = env("PVLB_TEST_SECRET") }
		 }`,
	} {
		_, diags := load(t, src)
		if !diags.HasErrors() {
			t.Errorf("%s: no error", src)
			continue
		}
		for _, d := range diags {
			if text := d.Summary + " " + d.Detail; strings.Contains(text, "hunter2") {
				t.Errorf("%s: the secret shows: %s", src, text)
			}
		}
	}
}

// Nesting counts as the parser sees it: brackets in strings and comments
// do not count, those in interpolations do; past MaxNesting the file is
// refused at the first opening too many, before the parser recurses.
func TestNestingLimit(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for src, wantOK := range map[string]bool{
		"x = " + deep(MaxNesting):                                                           true,
		"x = " + deep(MaxNesting+1):                                                         false,
		`x = "` + strings.Repeat("[{(", 200) + `"`:                                          true,
		"# " + strings.Repeat("[", 500) + "\nx = 1":                                         true,
		"/* " + strings.Repeat("{", 500) + " */ x = 1":                                      true,
		`x = "\"` + strings.Repeat("[", 500) + `"`:                                          true,
		`x = "` + strings.Repeat("${[", MaxNesting) + `"`:                                   false,
		"x = " + strings.Repeat("(", 50) + strings.Repeat("[", 50) + strings.Repeat("{", 1): false,
	} {
		_, ok := tooDeep([]byte(src))
		if ok != wantOK {
			t.Errorf("%.60q…: within the limit %v, want %v", src, ok, wantOK)
		}
	}
	_, diags := NewLoader().LoadSources(map[string][]byte{"deep.hcl": []byte("x = " + deep(100000))})
	if len(diags) != 1 || diags[0].Summary != "Nested too deeply" || diags[0].Subject.Start.Column != 5+MaxNesting {
		t.Fatalf("diagnostics %v", diags)
	}
}

// writeTestPKI writes a self-signed certificate (standing for both the CA
// and the client's certificate) and its key, and returns their paths.
func writeTestPKI(t *testing.T) (ca, cert, key string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, cert, key
}

// Files a configuration names are read at validate time: one missing, or
// not PEM, is an error on its attribute.
func TestTLSFilesAreChecked(t *testing.T) {
	ca, cert, key := writeTestPKI(t)
	base := `discovery "static" "s" {
  endpoint "a" { address = "h:1" }
}
service "svc" {
  discovery = discovery.static.s
  client {
    tls {
%s
    }
  }
}`
	notPEM := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for body, want := range map[string]string{
		fmt.Sprintf("ca_file = %q", "/nonexistent/ca.pem"):                        "ca_file: open /nonexistent/ca.pem: no such file or directory",
		fmt.Sprintf("ca_file = %q", notPEM):                                       "holds no PEM certificate",
		fmt.Sprintf("cert_file = %q\nkey_file = %q", cert, notPEM):                "cert_file: loading",
		fmt.Sprintf("ca_file = %q\ncert_file = %q\nkey_file = %q", ca, cert, key): "",
	} {
		_, diags := load(t, fmt.Sprintf(base, body))
		if want == "" {
			if diags.HasErrors() {
				t.Errorf("%s: %v", body, diags)
			}
			continue
		}
		if !diags.HasErrors() || !strings.Contains(diags.Error(), want) || diags[0].Summary != "Unusable TLS file" {
			t.Errorf("%s: %v, want %q", body, diags, want)
		}
	}
}

// Two endpoints at one address take two shares: a warning; a metadata key
// gRPC would refuse is an error; a plugin block for static has nothing to
// configure.
func TestMoreLocalChecks(t *testing.T) {
	_, diags := load(t, `discovery "static" "s" {
  endpoint "a" { address = "127.0.0.1:1" }
  endpoint "b" { address = "127.0.0.1:1" }
}`)
	if len(diags) != 1 || diags[0].Severity != hcl.DiagWarning || diags[0].Summary != "Duplicate address" {
		t.Errorf("duplicate address: %v", diags)
	}
	_, diags = load(t, `discovery "static" "s" {
  endpoint "a" {
    address  = "127.0.0.1:1"
    metadata = { Zone = "a", "rack id" = "b", "ok-key_1.x" = "c" }
  }
}`)
	var all strings.Builder
	for _, d := range diags {
		all.WriteString(d.Detail + "\n")
	}
	if text := all.String(); len(diags) != 2 || !strings.Contains(text, `"Zone" is not a gRPC metadata key`) || !strings.Contains(text, `like "zone"`) || !strings.Contains(text, `"rack id"`) {
		t.Errorf("metadata keys: %v", diags)
	}
	_, diags = load(t, `plugin "static" { sha256 = "0000000000000000000000000000000000000000000000000000000000000000" }`)
	if len(diags) != 1 || diags[0].Summary != "No plugin to configure" {
		t.Errorf("static plugin block: %v", diags)
	}
}

// A scenario block: its load and its timed steps, and located mistakes.
func TestScenarios(t *testing.T) {
	base := `discovery "static" "s" {
  endpoint "server1" { address = "127.0.0.1:1" }
  endpoint "server2" { address = "127.0.0.1:2" }
}
service "svc" { discovery = discovery.static.s }
`
	cfg, diags := load(t, base+`scenario "bad" {
  service  = "svc"
  requests = 5000
  rps      = 500
  at "2s" {
    server "server1" { down = true }
    server "server*" { latency = "50ms" }
  }
  at "4s" {
    server "server1" { down = false }
    server "server2" { error_rate = 0.25 }
  }
}`)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	sc, ok := cfg.Scenario("bad")
	if !ok || sc.Service != "svc" || sc.Requests != 5000 || sc.RPS != 500 || len(sc.Steps) != 2 || sc.Steps[1].At != 4*time.Second {
		t.Fatalf("scenario %+v", sc)
	}
	if s := sc.Steps[1].Servers[1]; s.Pattern != "server2" || s.ErrorRate == nil || *s.ErrorRate != 0.25 {
		t.Fatalf("step 2 server 2: %+v", s)
	}
	for src, want := range map[string]string{
		`scenario "x" { service = "sv" }`:                                                                                                     `Did you mean "svc"?`,
		`scenario "x" {` + "\n" + `service = "svc"` + "\n" + `at "soon" {}` + "\n}":                                                           `"soon" is not a time from the start of the run`,
		`scenario "x" {` + "\n" + `service = "svc"` + "\n" + `at "5s" {}` + "\n" + `at "2s" {}` + "\n}":                                       "write a scenario's at blocks in time order",
		`scenario "x" {` + "\n" + `service = "svc"` + "\n" + `at "1s" {` + "\n" + `server "server1" { down = false }` + "\n}\n}":              `"server1" is not down at 1s`,
		`scenario "x" {` + "\n" + `service = "svc"` + "\n" + `rps = 10` + "\n" + `concurrency = 2` + "\n}":                                    "Set rps (open loop) or concurrency (closed loop), not both.",
		`scenario "x" {` + "\n" + `service = "svc"` + "\n" + `at "1s" {` + "\n" + `server "server1" { capacity = 2 }` + "\n}\n}":              `An argument named "capacity" is not expected here.`,
		`scenario "x" {` + "\n" + `service = "svc"` + "\n" + `at "1s" {` + "\n" + `server "server1" { error_code = "UNAVAILBLE" }` + "\n}\n}": `Did you mean "UNAVAILABLE"?`,
		`scenario "x" {` + "\n" + `service = "svc"` + "\n" + `concurrency = 4` + "\n" + `at "1s" {` + "\n" + `rps = 5` + "\n}\n}":             "a step's rps needs an open loop",
		`scenario "x" {` + "\n" + `service = "svc"` + "\n" + `at "1s" {` + "\n" + `server "server1" { slow = 0 }` + "\n}\n}":                  "slow must be from 0.001 to 1000",

		`scenario "x" {` + "\n" + `service = "svc"` + "\n" + `at "1s" {` + "\n" + `ramp = "5s"` + "\n}\n}":                              "ramp is how long the offered load takes to move to this step's rps; set rps too",
		`scenario "x" {` + "\n" + `service = "svc"` + "\n" + `at "1s" {` + "\n" + `server "server1" { discovered = true }` + "\n}\n}":   `"server1" is still discovered at 1s`,
		`scenario "x" {` + "\n" + `service = "svc"` + "\n" + `at "1s" {` + "\n" + `server "server1" { cold_start_slow = 4 }` + "\n}\n}": "set cold_start too",
		`scenario "x" {` + "\n" + `service = "svc"` + "\n" + `at "1s" {` + "\n" + `server "server1" { cold_start = "0s" }` + "\n}\n}":   "cold_start must be positive",
		`scenario "x" {` + "\n" + `service = "svc"` + "\n" + `rps = 10` + "\n" + `at "1s" {` + "\n" + `concurrency = 5` + "\n}\n}":      "this scenario is an open loop",
		`simulation "svc" {` + "\n" + `server "*" { discovered = false }` + "\n}":                                                       `An argument named "discovered" is not expected here.`,
	} {
		_, diags := load(t, base+src)
		var all strings.Builder
		for _, d := range diags {
			all.WriteString(d.Detail + "\n")
		}
		if !diags.HasErrors() || !strings.Contains(all.String(), want) {
			t.Errorf("%s: %v, want %q", src, diags, want)
		}
		for _, d := range diags {
			if d.Subject == nil || d.Subject.Start.Line < 6 {
				t.Errorf("%s: %q is not located in the scenario: %v", src, d.Summary, d.Subject)
			}
		}
	}
}

// openService declares a static source and opens a service block using
// it, for a test to add a block and close it.
const openService = "discovery \"static\" \"s\" {\n  endpoint \"a\" { address = \"h:1\" }\n}\nservice \"svc\" {\n  discovery = discovery.static.s\n"

// wantLocatedError loads block inside the service of openService and
// wants an error saying want, every diagnostic located in the block.
func wantLocatedError(t *testing.T, block, want string) {
	t.Helper()
	_, diags := load(t, openService+"  "+block+"\n}")
	if !diags.HasErrors() || !strings.Contains(diags.Error(), want) {
		t.Errorf("%s: got %v, want an error with %q", block, diags, want)
	}
	for _, d := range diags {
		if d.Subject == nil || d.Subject.Start.Line < 6 {
			t.Errorf("%s: %q is not located in the block", block, d.Summary)
		}
	}
}

// A retry block takes gRPC's backoff names, Envoy's per_try_timeout and
// Finagle's budget (on by default) or A6's throttling; mistakes are
// located.
func TestRetryBudgetAndBackoff(t *testing.T) {
	base := openService
	cfg, diags := load(t, base+`}`)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	s, _ := cfg.Service("svc")
	if s.Retry.Budget == nil || *s.Retry.Budget != lb.DefaultRetryBudget() || s.Retry.Throttling != nil {
		t.Errorf("default retry budget %+v, throttling %+v", s.Retry.Budget, s.Retry.Throttling)
	}
	cfg, diags = load(t, base+`  retry {
    max_retries        = 4
    initial_backoff    = "50ms"
    backoff_multiplier = 1.5
    max_backoff        = "200ms"
    per_try_timeout    = "250ms"
    budget {
      percent = 10
      ttl     = "30s"
    }
    throttling {
      max_tokens  = 10
      token_ratio = 0.1
    }
  }
}`)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	s, _ = cfg.Service("svc")
	r := s.Retry
	if r.Delay != 50*time.Millisecond || r.BackoffMultiplier != 1.5 || r.MaxBackoff != 200*time.Millisecond || r.PerTryTimeout != 250*time.Millisecond {
		t.Errorf("retry %+v", r)
	}
	if want := (lb.RetryBudget{Percent: 10, MinRetriesPerSecond: 10, TTL: 30 * time.Second}); r.Budget == nil || *r.Budget != want {
		t.Errorf("budget %+v", r.Budget)
	}
	if want := (lb.RetryThrottling{MaxTokens: 10, TokenRatio: 0.1}); r.Throttling == nil || *r.Throttling != want {
		t.Errorf("throttling %+v", r.Throttling)
	}
	if got := []time.Duration{r.Backoff(1), r.Backoff(2), r.Backoff(3), r.Backoff(4)}; fmt.Sprint(got) != "[50ms 75ms 112.5ms 168.75ms]" {
		t.Errorf("backoffs %v", got)
	}
	cfg, diags = load(t, base+"  retry {\n    budget { enabled = false }\n  }\n}")
	if s, _ = cfg.Service("svc"); diags.HasErrors() || s.Retry.Budget != nil {
		t.Errorf("budget off: %v, %+v", diags, s.Retry.Budget)
	}
	for src, want := range map[string]string{
		"retry {\n    delay = \"1s\"\n    initial_backoff = \"1s\"\n  }":                        "initial_backoff (gRPC's name) and delay are the same setting",
		"retry {\n    delay = \"1s\"\n    max_backoff = \"500ms\"\n  }":                         "max_backoff (500ms) is less than the first backoff (1s)",
		"retry {\n    budget {\n      ttl = \"2m\"\n    }\n  }":                                 "ttl must be from 1s to 1m",
		"retry {\n    budget {\n      enabled = false\n      percent = 5\n    }\n  }":           "so percent has no effect",
		"retry {\n    throttling { max_tokens = 10 }\n  }":                                      `The argument "token_ratio" is required`,
		"retry {\n    throttling {\n      max_tokens = 2000\n      token_ratio = 1\n    }\n  }": "max_tokens must be from 0.001 to 1000",
		"retry {\n    backoff_multiplier = 0.5\n  }":                                            "backoff_multiplier must be from 1 to 10",
	} {
		wantLocatedError(t, src, want)
	}
}

// circuit_breakers and rate_limit reach the balancer's config; mistakes
// are located.
func TestCircuitBreakersAndRateLimit(t *testing.T) {
	base := openService
	cfg, diags := load(t, base+`  circuit_breakers {
    max_requests              = 1024
    max_requests_per_endpoint = 4
    max_pending               = 16
  }
  rate_limit {
    requests_per_second = 100
    burst               = 20
  }
}`)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	s, _ := cfg.Service("svc")
	b := s.BalancerConfig()
	if *b.CircuitBreakers != (lb.CircuitBreakers{MaxRequests: 1024, MaxRequestsPerEndpoint: 4, MaxPending: 16}) || *b.RateLimit != (lb.RateLimit{RequestsPerSecond: 100, Burst: 20}) {
		t.Errorf("breakers %+v, rate limit %+v", b.CircuitBreakers, b.RateLimit)
	}
	for src, want := range map[string]string{
		"circuit_breakers {}":                                            "Set max_requests",
		"circuit_breakers { max_requests = 0 }":                          "max_requests must be a whole number from 1",
		"rate_limit { burst = 5 }":                                       `The argument "requests_per_second" is required`,
		"rate_limit { requests_per_second = -1 }":                        "requests_per_second must be from 0.001",
		"rate_limit {\n    requests_per_second = 10\n    burst = 0\n  }": "burst must be a whole number from 1",
	} {
		wantLocatedError(t, src, want)
	}
}

func TestHedgingBlock(t *testing.T) {
	base := openService
	cfg, diags := load(t, base+`  hedging {
    max_attempts    = 3
    delay           = "40ms"
    non_fatal_codes = ["UNAVAILABLE"]
    methods         = ["Get*", "/peervault.PeerVaultService/HealthCheck"]
  }
}`)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	s, _ := cfg.Service("svc")
	h := s.Hedging
	if h == nil || h.MaxAttempts != 3 || h.Delay != 40*time.Millisecond || h.NonFatalCodes != statuscode.SetOf(statuscode.Unavailable) {
		t.Fatalf("hedging %+v", h)
	}
	for method, want := range map[string]bool{
		"/peervault.PeerVaultService/GetUserData":      true,
		"/peervault.PeerVaultService/HealthCheck":      true,
		"/peervault.PeerVaultService/RecordUserEvents": false,
		"/other.Service/HealthCheck":                   false,
	} {
		if h.Hedges(method) != want {
			t.Errorf("%s hedged: %v, want %v", method, !want, want)
		}
	}
	for src, want := range map[string]string{
		"hedging { max_attempts = 2 }":                                `The argument "methods" is required`,
		"hedging {\n    methods = []\n  }":                            "an empty list hedges nothing",
		"hedging {\n    methods = [\"[\"]\n  }":                       "is neither a method name nor a valid pattern",
		"hedging {\n    max_attempts = 6\n    methods = [\"*\"]\n  }": "max_attempts must be a whole number from 2 to 5",
	} {
		wantLocatedError(t, src, want)
	}
}

func TestSimulatedPushback(t *testing.T) {
	base := "discovery \"static\" \"s\" {\n  endpoint \"a\" { address = \"h:1\" }\n}\nservice \"svc\" { discovery = discovery.static.s }\n"
	cfg, diags := load(t, base+"simulation \"svc\" {\n  server \"a\" { pushback = \"300ms\" }\n  server \"*\" { pushback = \"no_retry\" }\n}")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	sim, _ := cfg.Simulation("svc")
	if *sim.Servers[0].Pushback != 300*time.Millisecond || *sim.Servers[1].Pushback != PushbackNoRetry {
		t.Errorf("pushbacks %v, %v", *sim.Servers[0].Pushback, *sim.Servers[1].Pushback)
	}
	_, diags = load(t, base+"simulation \"svc\" {\n  server \"a\" { pushback = \"soon\" }\n}")
	if !diags.HasErrors() || !strings.Contains(diags.Error(), `a wait such as "300ms", or "no_retry"`) || diags[0].Subject.Start.Line != 6 {
		t.Errorf("bad pushback: %v", diags)
	}
}

// A locality block reads its mode (priorities when it lists them), the
// client's zone from a literal or env(), and each mode's settings; every
// mistake is located in the block.
func TestLocalityBlock(t *testing.T) {
	t.Setenv("PVLB_TEST_ZONE", "eu-west-1a")
	cfg, diags := load(t, openService+`  locality {
    local_zone       = env("PVLB_TEST_ZONE")
    min_cluster_size = 3
    client_zones     = { "eu-west-1a" = 2, "eu-west-1b" = 1 }
  }
}`)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	svc, _ := cfg.Service("svc")
	want := lb.Locality{Mode: lb.PreferLocal, LocalZone: "eu-west-1a", MinClusterSize: 3, ClientZones: map[string]float64{"eu-west-1a": 2, "eu-west-1b": 1}}
	if !reflect.DeepEqual(*svc.Locality, want) || svc.BalancerConfig().Locality != svc.Locality {
		t.Fatalf("locality %+v, want %+v", *svc.Locality, want)
	}
	cfg, diags = load(t, openService+"  locality {\n    priorities = [\"eu-west-1a\", \"*\"]\n  }\n}")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if svc, _ := cfg.Service("svc"); svc.Locality.Mode != lb.Priorities {
		t.Fatalf("a locality listing priorities has mode %q", svc.Locality.Mode)
	}
	for block, want := range map[string]string{
		`locality { mode = "nearest" }`:                                               `Mode must be "prefer_local" or "priorities"`,
		`locality { mode = "prefer_local" }`:                                          "needs local_zone",
		`locality { priorities = ["a", "a"] }`:                                        `Zone "a" is listed twice`,
		"locality {\n    priorities = [\"a\"]\n    overprovisioning_factor = 90\n  }": "overprovisioning_factor",
		"locality {\n    local_zone = \"a\"\n    min_cluster_size = 0\n  }":           "min_cluster_size",
		"locality {\n    local_zone = \"a\"\n    client_zones = { a = -1 }\n  }":      "must be above 0",
		"locality {\n    local_zone = \"a\"\n    zones = 3\n  }":                      "Unsupported argument",
	} {
		wantLocatedError(t, block, want)
	}
}

// A subset block: its size (required) and the client's index, from a
// literal or from the environment; mistakes are located.
func TestSubsetBlock(t *testing.T) {
	t.Setenv("PVLB_TEST_ORDINAL", "7")
	cfg, diags := load(t, openService+"  subset {\n    size         = 20\n    client_index = tonumber(env(\"PVLB_TEST_ORDINAL\"))\n  }\n}")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	svc, _ := cfg.Service("svc")
	if sub := svc.BalancerConfig().Subset; sub == nil || sub.Size != 20 || sub.ClientIndex == nil || *sub.ClientIndex != 7 {
		t.Fatalf("subset %+v", svc.Subset)
	}
	for block, want := range map[string]string{
		"subset {\n    size = 0\n  }":                        "size",
		"subset {\n    client_index = 1\n  }":                `The argument "size" is required`,
		"subset {\n    size = 5\n    client_index = -1\n  }": "client_index",
	} {
		wantLocatedError(t, block, want)
	}
}
