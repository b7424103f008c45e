package simreport

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peervault/pvlb/pkg/config"
	"github.com/peervault/pvlb/pkg/latency"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/sim"
)

// badDay runs examples/bad-day.hcl's scenario through each strategy.
func badDay(t *testing.T, strategies ...string) []*sim.Report {
	t.Helper()
	cfg, diags := config.NewLoader().LoadPath(filepath.Join("..", "..", "..", "examples", "bad-day.hcl"))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	svc, _ := cfg.Service("peervault")
	var runs []*sim.Report
	for _, s := range strategies {
		c, err := sim.Assemble(cfg, svc, svc.Discovery.Specs(), sim.Overrides{Scenario: "bad_day", Strategy: s, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		r, err := sim.Run(*c)
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, r)
	}
	return runs
}

var seriesAttr = regexp.MustCompile(`<svg id="([a-z0-9-]+)"|data-series="([^"]+)"|class="event"`)

// chartSeries maps each chart's id to its series' names, and counts its
// event markers under "events:ID".
func chartSeries(page string) map[string][]string {
	out := map[string][]string{}
	var chart string
	for _, m := range seriesAttr.FindAllStringSubmatch(page, -1) {
		switch {
		case m[1] != "":
			chart = m[1]
			out[chart] = []string{}
		case m[2] != "":
			out[chart] = append(out[chart], m[2])
		default:
			out["events:"+chart] = append(out["events:"+chart], "")
		}
	}
	return out
}

func write(t *testing.T, p Page) string {
	t.Helper()
	var b bytes.Buffer
	if err := Write(&b, p); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// A comparison's page has every chart with the expected series, the
// scenario's events on each time axis, and nothing that would run or
// fetch.
func TestPageHasTheChartsAndSeries(t *testing.T) {
	runs := badDay(t, "round_robin", "least_connections", "fastest")
	page := write(t, Page{Command: "pvlb simulate -c examples/bad-day.hcl --scenario bad_day", Runs: runs})
	got := chartSeries(page)
	strategies := []string{"round_robin", "least_connections", "fastest (peak_ewma)"}
	want := map[string][]string{
		"p99-by-strategy": strategies,
		"latency-cdf":     strategies,
		"load-0":          {"server1", "server2", "server3"},
		"latency-1":       {"p50", "p90", "p99"},
	}
	for id, series := range want {
		if fmt.Sprint(got[id]) != fmt.Sprint(series) {
			t.Errorf("chart %s has series %q, want %q", id, got[id], series)
		}
	}
	// bad_day has five steps at five instants.
	for _, id := range []string{"p99-by-strategy", "load-2", "latency-0"} {
		if n := len(got["events:"+id]); n != 5 {
			t.Errorf("chart %s marks %d events, want 5", id, n)
		}
	}
	for _, forbidden := range []string{"<script", "src=", "href=", "@import", "url("} {
		if strings.Contains(page, forbidden) {
			t.Errorf("the page has %q: it must neither run nor fetch anything", forbidden)
		}
	}
	for _, text := range []string{"Strategies side by side", "15 s: server1: goes down", "scenario &#34;bad_day&#34;"} {
		if !strings.Contains(page, text) {
			t.Errorf("the page lacks %q", text)
		}
	}
}

// A fleet of many servers stacks the busiest apart and the rest as one.
func TestManyServersStackIntoOthers(t *testing.T) {
	var servers []sim.Server
	for i := range 15 {
		servers = append(servers, sim.Server{EndpointSpec: lb.EndpointSpec{ID: fmt.Sprintf("s%02d", i), Host: "10.0.0.1", Port: 1 + i, Weight: 1 + i},
			Behaviour: config.Behaviour{Latency: latency.Default}})
	}
	b := lb.DefaultConfig()
	b.Strategy.Kind = lb.Weighted
	r, err := sim.Run(sim.Config{Balancer: b, Servers: servers, Requests: 5000, RPS: 1000, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	got := chartSeries(write(t, Page{Runs: []*sim.Report{r}}))["load-0"]
	if len(got) != maxStacked+1 || got[0] != "s14" || got[maxStacked] != "5 other servers" {
		t.Errorf("stacked series %q, want the 10 busiest (s14 first) and 5 others", got)
	}
}

// The page renders in a real headless Chromium without a console message
// (its policy turns any script or fetch into one), and the screenshot
// shows the charts' colours. The screenshot is kept in
// $PVLB_ARTIFACT_DIR when set. Without Chromium the test is skipped,
// unless CI is set: CI installs it.
func TestPageRendersInChromium(t *testing.T) {
	browser := findChromium()
	if browser == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("no chromium on PATH; CI installs Debian's chromium package")
		}
		t.Skip("no chromium on PATH (apt-get install chromium)")
	}
	dir := t.TempDir()
	runs := badDay(t, "round_robin", "least_connections", "fastest")
	page := filepath.Join(dir, "report.html")
	if err := os.WriteFile(page, []byte(write(t, Page{Command: "pvlb simulate -c examples/bad-day.hcl --scenario bad_day --compare round_robin,least_connections,fastest", Runs: runs})), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "report.png")
	if art := os.Getenv("PVLB_ARTIFACT_DIR"); art != "" {
		if err := os.MkdirAll(art, 0o755); err != nil {
			t.Fatal(err)
		}
		out = filepath.Join(art, "simulate-report.png")
	}
	dom, console := render(t, browser, dir, "--dump-dom", "file://"+page)
	if len(console) > 0 {
		t.Errorf("console messages while rendering:\n%s", strings.Join(console, "\n"))
	}
	got := chartSeries(dom)
	if len(got["p99-by-strategy"]) != 3 || len(got["load-2"]) != 3 || len(got["events:latency-0"]) != 5 {
		t.Errorf("the rendered page's charts: %v", got)
	}
	_, console = render(t, browser, dir, "--screenshot="+out, "--window-size=1000,2400", "--hide-scrollbars", "file://"+page)
	if len(console) > 0 {
		t.Errorf("console messages while taking the screenshot:\n%s", strings.Join(console, "\n"))
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	// Each strategy's colour covers a good part of the picture (lines,
	// areas, swatches).
	for i, want := range []string{"#0072B2", "#E69F00", "#009E73"} {
		if n := pixelsNear(img, want); n < 2000 {
			t.Errorf("series colour %d (%s) covers %d pixels of the screenshot, want thousands", i, want, n)
		}
	}
	t.Logf("screenshot: %s", out)

	// The check can fail: a page that fetches shows a console message.
	bad := filepath.Join(dir, "bad.html")
	if err := os.WriteFile(bad, bytes.Replace([]byte(write(t, Page{Runs: runs[:1]})), []byte("</body>"), []byte(`<img src="https://example.com/x.png"></body>`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, console := render(t, browser, dir, "--dump-dom", "file://"+bad); len(console) == 0 {
		t.Error("a page that fetches an image gave no console message: the check above proves nothing")
	}
}

func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	return ""
}

var consoleLine = regexp.MustCompile(`:CONSOLE[:(]`)

// render runs headless Chromium on its own profile in dir, bounded in
// time, and returns its output and the console messages it logged. The
// browser's whole process group ends with it.
func render(t *testing.T, browser, dir string, args ...string) (string, []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--user-data-dir=" + filepath.Join(dir, "profile"), "--enable-logging=stderr", "--v=0"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // its helpers, if any outlived it
	if err != nil {
		t.Fatalf("%s: %v\n%s", browser, err, stderr.String())
	}
	var console []string
	for _, line := range strings.Split(stderr.String(), "\n") {
		if consoleLine.MatchString(line) {
			console = append(console, line)
		}
	}
	return stdout.String(), console
}

// pixelsNear counts the pixels within a small distance of colour hex.
func pixelsNear(img image.Image, hex string) int {
	var r0, g0, b0 int
	fmt.Sscanf(hex, "#%02x%02x%02x", &r0, &g0, &b0)
	n := 0
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			if abs(int(r>>8)-r0)+abs(int(g>>8)-g0)+abs(int(b>>8)-b0) < 40 {
				n++
			}
		}
	}
	return n
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// A measured run (pvlb load) makes a page that says so: real calls, the
// wall clock, no seed; its series come from the calls' own times.
func TestMeasuredRunPage(t *testing.T) {
	b, err := lb.New(lb.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Sync([]lb.EndpointSpec{{ID: "server1", Host: "10.0.0.1", Port: 1, Weight: 1}, {ID: "server2", Host: "10.0.0.2", Port: 1, Weight: 1}}); err != nil {
		t.Fatal(err)
	}
	m := sim.NewMeasurement("peervault", lb.RoundRobin, "", b.Endpoints())
	start := time.Now()
	for i := range 100 {
		id := fmt.Sprintf("server%d", i%2+1)
		m.Call([]sim.MeasuredAttempt{{Server: id, Took: time.Millisecond}}, start.Add(time.Duration(i)*10*time.Millisecond), time.Millisecond, true)
	}
	r := m.Report(time.Second)
	if len(r.Timeline.Succeeded) == 0 || len(r.Servers[0].Timeline) == 0 {
		t.Fatalf("no time series: %+v", r.Timeline)
	}
	var page bytes.Buffer
	if err := Write(&page, Page{Command: "pvlb load ...", Runs: []*sim.Report{r}}); err != nil {
		t.Fatal(err)
	}
	html := page.String()
	for _, want := range []string{`pvlb load: service &#34;peervault&#34;`, "100 real calls", "Made by pvlb load", ">time<"} {
		if !strings.Contains(html, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	for _, unwanted := range []string{"seed", "simulated time"} {
		if strings.Contains(html, unwanted) {
			t.Errorf("a measured run's page says %q", unwanted)
		}
	}
}

// A comparison of runs whose servers cache keys shows each run's cache
// hits; one without caches has no such column.
func TestComparisonShowsCacheHits(t *testing.T) {
	run := func(label string, hits, misses int) *sim.Report {
		return &sim.Report{Service: "peervault", Strategy: label, Requests: hits + misses, Succeeded: hits + misses, CacheHits: hits, CacheMisses: misses,
			Servers: []sim.ServerReport{{ID: "server1", Share: 1, Timeline: []int{1}}}, Timeline: sim.Timeline{Step: sim.Millis(time.Second), Succeeded: []int{1}, Failed: []int{0}, P50: []sim.Millis{1}, P90: []sim.Millis{1}, P99: []sim.Millis{1}}}
	}
	for _, tc := range []struct {
		runs []*sim.Report
		want bool
	}{
		{[]*sim.Report{run("round_robin", 20, 80), run("ring_hash", 70, 30)}, true},
		{[]*sim.Report{run("round_robin", 0, 0), run("random", 0, 0)}, false},
	} {
		var page bytes.Buffer
		if err := Write(&page, Page{Runs: tc.runs}); err != nil {
			t.Fatal(err)
		}
		html := page.String()
		if got := strings.Contains(html, "<th>cache hits</th>"); got != tc.want {
			t.Errorf("cache hits column: %v, want %v", got, tc.want)
		}
		if tc.want && (!strings.Contains(html, "<td>20.0%</td></tr>") || !strings.Contains(html, "<td>70.0%</td></tr>")) {
			t.Error("the runs' hit rates are not in the table")
		}
	}
}
