package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/peervault/pvlb/internal/testtools"
)

// pvlb load reports a server's health changing while it runs, a line as
// it happens when its output is not a terminal; SIGINT ends the run
// early with the report of what was measured, exit 0, calls it cut short
// not counted as failures.
func TestLoadReportsChangesAndStopsOnSIGINT(t *testing.T) {
	servers := testtools.DemoServers(t, 2)
	var stdout bytes.Buffer
	p := startPiped(t, "stderr", &stdout, "load", "-c", staticConfig(t, servers, true), "/peervault.PeerVaultService/GetUserData", "-d", `{"user_id":"u1"}`,
		"--concurrency", "2", "--duration", "5m")
	testtools.WaitFor(t, "calls to reach server2", func() bool { return servers[1].Calls() > 20 })
	servers[1].SetServing(false)
	found := p.await(t, "server2", "healthy → unhealthy")
	p.interrupt(t)
	out := stdout.String()
	t.Logf("%s\n%s", found, out)
	if !strings.Contains(out, "Measured ") || !strings.Contains(out, "server1") {
		t.Errorf("no report after SIGINT:\n%s", out)
	}
	if !strings.Contains(out, " 0 failed") {
		t.Errorf("calls cut short by SIGINT were counted as failures:\n%s", out)
	}
}

// pvlb load --metrics-addr serves the balancer's metrics while it runs:
// picks per endpoint, which add up to the calls made (less those in
// flight), and each attempt's duration by endpoint and status.
func TestLoadServesMetrics(t *testing.T) {
	servers := testtools.DemoServers(t, 3)
	p := startPiped(t, "stderr", nil, "load", "-c", staticConfig(t, servers, false), "/peervault.PeerVaultService/GetUserData", "-d", `{"user_id":"u1"}`,
		"--concurrency", "2", "--duration", "5m", "--metrics-addr", "127.0.0.1:0")
	_, url, _ := strings.Cut(p.await(t, "pvlb: metrics at "), "pvlb: metrics at ")
	testtools.WaitFor(t, "calls to reach every server", func() bool {
		for _, s := range servers {
			if s.Calls() < 50 {
				return false
			}
		}
		return true
	})
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	text := string(body)
	value := func(re string) float64 {
		t.Helper()
		m := regexp.MustCompile("(?m)^" + re + " ([0-9.e+]+)$").FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("no %s in:\n%s", re, text)
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	var picks float64
	for _, s := range servers {
		n := value(fmt.Sprintf(`pvlb_endpoint_picks_total\{grpc_target="peervault",pvlb_address="%s",pvlb_endpoint="%s"\}`, regexp.QuoteMeta(s.Addr()), s.Name()))
		attempts := value(fmt.Sprintf(`pvlb_client_attempt_duration_seconds_count\{grpc_method="/peervault.PeerVaultService/GetUserData",grpc_status="OK",grpc_target="peervault",pvlb_endpoint="%s"\}`, s.Name()))
		if attempts > n || n-attempts > 2 {
			t.Errorf("%s: %v picks, %v attempts recorded", s.Name(), n, attempts)
		}
		picks += n
	}
	calls := value(`pvlb_client_calls_total\{grpc_target="peervault",pvlb_event="call"\}`)
	if d := picks - calls; d < -2 || d > 3 { // calls in flight, and the reflection call that found the method
		t.Errorf("%v picks, %v calls", picks, calls)
	}
	p.interrupt(t)
	dashboardUsesServedMetrics(t, text)
}

// dashboardUsesServedMetrics checks that every metric the example Grafana
// dashboard queries is one that pvlb serves (in scraped, a scrape of a
// running pvlb) and that docs/metrics.md documents.
func dashboardUsesServedMetrics(t *testing.T, scraped string) {
	t.Helper()
	raw, err := os.ReadFile("../../examples/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("examples/grafana-dashboard.json: %v", err)
	}
	docs, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	served, labels := map[string]bool{}, map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^(pvlb_[a-z_]+)[{ ]`).FindAllStringSubmatch(scraped, -1) {
		served[m[1]] = true
	}
	for _, m := range regexp.MustCompile(`[{,]([a-z_]+)="`).FindAllStringSubmatch(scraped, -1) {
		labels[m[1]] = true
	}
	suffix := regexp.MustCompile(`_(total|seconds|bucket|count|sum)$`)
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			for _, name := range regexp.MustCompile(`pvlb_[a-z_]+`).FindAllString(target.Expr, -1) {
				if labels[name] {
					continue // a label, not a metric
				}
				if !served[name] {
					t.Errorf("panel %q queries %s, which pvlb does not serve", p.Title, name)
				}
				// pvlb_endpoint_picks_total is pvlb.endpoint.picks in the docs.
				otel := strings.ReplaceAll(suffix.ReplaceAllString(suffix.ReplaceAllString(name, ""), ""), "_", ".")
				if !strings.Contains(strings.ReplaceAll(string(docs), "_", "."), "`"+otel+"`") {
					t.Errorf("panel %q queries %s, whose metric %s docs/metrics.md does not list", p.Title, name, otel)
				}
			}
		}
	}
}
