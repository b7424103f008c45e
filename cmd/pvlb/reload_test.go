package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/internal/testtools/procstate"
	"github.com/peervault/pvlb/pkg/demoserver"
)

// reloadConfig writes one of the configurations the reload test moves
// through: the strategy, and the servers found by a static list or, with
// endpointsFile, by the file plugin reading that file.
func reloadConfig(t *testing.T, path, strategy string, servers []*demoserver.Server, endpointsFile string) {
	t.Helper()
	block, kind := testtools.DiscoveryBlock(t, servers, endpointsFile)
	src := block + fmt.Sprintf(`strategy "chosen" {
  kind = %q
}
health_policy "quick" {
  interval            = "200ms"
  timeout             = "150ms"
  unhealthy_threshold = 1
  healthy_threshold   = 1
}
service "peervault" {
  discovery = discovery.%s.local
  strategy  = strategy.chosen
  health    = health_policy.quick
}
`, strategy, kind)
	replaceFile(t, path, src)
}

// replaceFile writes content to path as editors save: a copy renamed over.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// While pvlb load --watch runs at a steady rate, its configuration changes
// under it: reloaded on SIGHUP, the strategy changed, a server removed,
// the discovery swapped from a static list to a plugin and from one
// plugin to another, a broken configuration offered, and back to a static
// list. No call fails, each change shows in the view soon after, the
// broken configuration is refused with its location, every plugin a
// reload replaced has ended, and SIGINT ends the run with exit 0.
func TestLoadReloadsUnderLoad(t *testing.T) {
	servers := testtools.DemoServers(t, 3)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "pvlb.hcl")
	reloadConfig(t, cfg, "round_robin", servers, "")
	var stdout lockedBuffer
	p := startPiped(t, "stderr", &stdout, "--log-level", "debug", "load", "-c", cfg, "/peervault.PeerVaultService/GetUserData", "-d", `{"user_id":"u1"}`,
		"--rps", "200", "--duration", "5m", "--watch", "-o", "json")
	testtools.WaitFor(t, "calls to reach every server", func() bool {
		return servers[0].Calls() > 20 && servers[1].Calls() > 20 && servers[2].Calls() > 20
	})
	// changed is when the latest change was made; shown logs how long it
	// took to show.
	var changed time.Time
	shown := func(what string, want ...string) {
		t.Helper()
		line := p.await(t, want...)
		t.Logf("%s: shown %s after the change: %s", what, time.Since(changed).Round(time.Millisecond), line)
	}

	changed = time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	shown("SIGHUP", "  configuration reloaded (SIGHUP)")

	changed = time.Now()
	reloadConfig(t, cfg, "least_connections", servers, "")
	shown("strategy", "  configuration reloaded (the files changed)")
	shown("strategy in the totals", "strategy least_connections")

	changed = time.Now()
	reloadConfig(t, cfg, "least_connections", servers[:2], "")
	shown("server removed", "  peervault  server3  ", "  removed")
	atRemoval := servers[2].Calls()

	following := regexp.MustCompile(`following the service's endpoints.*pid=(\d+)`)
	pluginPid := func() int {
		t.Helper()
		m := following.FindStringSubmatch(p.await(t, "following the service's endpoints"))
		pid, _ := strconv.Atoi(m[1])
		return pid
	}
	changed = time.Now()
	reloadConfig(t, cfg, "least_connections", servers[:2], filepath.Join(dir, "a.json"))
	first := pluginPid()
	shown("discovery swapped to the file plugin", "  configuration reloaded (")

	changed = time.Now()
	reloadConfig(t, cfg, "least_connections", servers[:2], filepath.Join(dir, "b.json"))
	second := pluginPid()
	shown("file plugin replaced", "  configuration reloaded (")
	testtools.WaitFor(t, "the replaced plugin to end", func() bool { return procstate.Ended(first) })

	good, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	changed = time.Now()
	replaceFile(t, cfg, strings.Replace(string(good), `kind = "least_connections"`, `kind = "fastest_ever"`, 1))
	shown("broken configuration", "  configuration refused, the running one stays: ", "pvlb.hcl:", ": Unknown strategy kind: \"fastest_ever\" is not a strategy kind")

	changed = time.Now()
	reloadConfig(t, cfg, "peak_ewma", servers[:2], "")
	shown("back to a static list", "  configuration reloaded (")
	shown("strategy in the totals", "strategy peak_ewma")
	testtools.WaitFor(t, "the last plugin to end", func() bool { return procstate.Ended(second) })

	p.interrupt(t)
	var report struct {
		Requests, Failed int
		Strategy         string
	}
	if err := json.Unmarshal(bytes.TrimSpace([]byte(stdout.String())), &report); err != nil {
		t.Fatalf("final report: %v\n%s", err, stdout.String())
	}
	t.Logf("%d calls, %d failed; server3 took %d calls before its removal, %d in all", report.Requests, report.Failed, atRemoval, servers[2].Calls())
	if report.Failed != 0 || report.Requests < 200 {
		t.Errorf("%d of %d calls failed through the reloads, want none", report.Failed, report.Requests)
	}
	if report.Strategy != "peak_ewma" {
		t.Errorf("the report names strategy %q, want the one in force at the end, peak_ewma", report.Strategy)
	}
	if n := servers[2].Calls(); n > atRemoval+5 {
		t.Errorf("server3 took %d calls after it was removed", n-atRemoval)
	}
}
