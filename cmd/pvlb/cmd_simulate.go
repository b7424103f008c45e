package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/peervault/pvlb/pkg/config"
	"github.com/peervault/pvlb/pkg/discovery"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/sim"
	"github.com/peervault/pvlb/pkg/sim/simreport"
)

// SimulateCmd runs a service's balancer against simulated servers.
type SimulateCmd struct {
	Service     string   `short:"s" help:"Service to simulate. Needed only when the configuration has more than one."`
	Requests    *int     `short:"n" help:"Number of requests to send (default: the scenario's, else 10000)."`
	Scenario    string   `placeholder:"NAME" help:"Run a scenario block of the configuration: its service, its load and what happens to the servers when. The other flags still apply on top."`
	RPS         *float64 `name:"rps" help:"Send requests open-loop at this mean rate per second (Poisson arrivals). The default, without --concurrency, is 1000."`
	Concurrency *int     `help:"Instead of a rate, keep this many requests in flight (closed loop)."`
	Strategy    string   `help:"Try another strategy than the service's: a strategy block of the configuration by its name, or a kind with its defaults (${strategies})." placeholder:"NAME|KIND"`
	NoLocality  bool     `name:"no-locality" help:"Ignore the service's locality block and balance over every zone alike: run with and without it to see what zone-aware routing changes."`
	NoSubset    bool     `name:"no-subset" help:"Ignore the service's subset block: every client balances over every server, to compare the spread with subsets."`
	Compare     []string `placeholder:"NAME|KIND,..." help:"Run the same traffic through each of these strategies (names or kinds, or all for every kind) and compare them in one table. Every strategy sees the same arrivals and the same random draws per request."`
	Latency     []string `sep:"none" placeholder:"[SERVER=]MODEL" help:"Latency model: 20ms, normal(20ms,5ms), lognormal(MEDIAN,P99), recorded(FILE[,COLUMN]) to resample latencies recorded from a real service, or replay(FILE[,COLUMN]) to take them in order. Without SERVER= it applies to every server. Repeatable."`
	ErrorRate   []string `sep:"none" placeholder:"[SERVER=]RATE" help:"Share of a server's answers that fail, 0 to 1. Repeatable."`
	Capacity    []string `sep:"none" placeholder:"[SERVER=]N" help:"Requests a server handles at once; more wait in its queue (at most 100,000; more are refused and counted as dropped). 0 is unlimited. Repeatable."`
	Down        []string `sep:"none" placeholder:"SERVER@FROM[-TO]" help:"Take a server down from FROM to TO (simulated time, e.g. server2@2s-5s), or for the rest of the run. Repeatable."`
	Sessions    int      `help:"Spread requests over this many sticky session ids."`
	Keys        int      `help:"Give each request one of this many keys, which ring_hash and maglev hash and servers with cache_keys cache."`
	KeySkew     float64  `name:"key-skew" placeholder:"S" help:"Draw the keys from a Zipf distribution of exponent S (above 1: 1.1 mild, 2 steep) rather than uniformly: a few hot keys take most requests."`
	Clients     *int     `help:"Send from this many independent client balancers (application instances), each with its own picker state, sessions and outcomes; each request comes from one at random. Default 1."`
	Seed        uint64   `default:"1" help:"Random seed; the same seed gives the same run."`
	Output      string   `short:"o" default:"text" enum:"text,json" help:"Output format: ${enum}."`
	Report      string   `placeholder:"FILE.html" type:"path" help:"Also write the run (or the comparison) as one self-contained HTML page with charts over time: requests per server, latency percentiles, the latency distribution of each strategy, the scenario's events."`

	warned bool // the overload warning was given (once for --compare)
}

// Help is shown by pvlb simulate --help.
func (c *SimulateCmd) Help() string {
	return `Sends simulated requests through the configured service's balancer (the
same strategy code that serves real traffic) against simulated servers, on a
simulated clock, and reports how the traffic spread: requests, share and
expected share, errors, latency percentiles and peak in-flight per server,
the balancer's own moving average of each server's latency (EWMA, learnt
from every attempt's outcome), then totals and what failover did.

The service's strategy, sticky sessions, retries (with their budget,
per-try timeout and hedging), circuit breakers, rate limits and health
policy all act as configured. How each server behaves comes from the
service's simulation block (server "ID-OR-PATTERN" { latency error_rate
capacity cold_start pushback cache_keys miss_latency }), overridden by the
flags; servers it does
not set answer in lognormal(10ms, 40ms). A scenario block (--scenario)
says what happens over time: load steps and ramps, servers slowing,
failing, going down, leaving and joining discovery, starting cold. A
server taken --down breaks its connections (calls on it fail and are
retried elsewhere), is marked unhealthy at once, and returns after
healthy_threshold passed health checks once it is back.

Examples:
  pvlb simulate -c examples/weighted.hcl
  pvlb simulate -c examples/weighted.hcl --down secondary@2s-5s
  pvlb simulate -c examples/basic.hcl --latency server3=lognormal(50ms,200ms) --strategy least_connections --concurrency 32
  pvlb simulate -c examples/sticky.hcl --sessions 100 --output json
  pvlb simulate -c examples/slow.hcl --requests 20000 --rps 2000 --compare round_robin,two_choices,three_choices
  pvlb simulate -c examples/deploy.hcl --scenario deploy --compare round_robin,gentle,fastest --report deploy.html
  pvlb simulate -c examples/affinity.hcl --keys 100000 --key-skew 1.1 --compare round_robin,by_user,by_user_bounded`
}

// Run simulates.
func (c *SimulateCmd) Run(a *app) error {
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	service := c.Service
	if c.Scenario != "" {
		sc, err := sim.FindScenario(cfg, c.Scenario)
		if err != nil {
			return userError{err}
		}
		if service != "" && service != sc.Service {
			return userErrorf("--service %q, but scenario %q is of service %q", service, sc.Name, sc.Service)
		}
		service = sc.Service
	}
	svc, err := pickService(cfg, service)
	if err != nil {
		return err
	}
	// Endpoints come from discovery as they would at run time: a static
	// list as written, any other kind through its plugin.
	ctx, cancel := context.WithTimeout(a.ctx, 2*discovery.StartTimeout)
	discovered, err := a.pluginHost(cfg).Endpoints(ctx, cfg, svc.Discovery, svc.Name)
	cancel()
	if err != nil {
		return userError{err}
	}
	var rps float64
	var concurrency int
	if c.RPS != nil {
		if rps = *c.RPS; !(rps > 0) {
			return userErrorf("--rps must be a positive rate of requests per second, not %v", rps)
		}
	}
	if c.Concurrency != nil {
		if concurrency = *c.Concurrency; concurrency < 1 {
			return userErrorf("--concurrency must be at least 1, not %d", concurrency)
		}
	}
	clients := 0
	if c.Clients != nil {
		if clients = *c.Clients; clients < 1 {
			return userErrorf("--clients must be at least 1, not %d", clients)
		}
	}
	requests := 0
	if c.Requests != nil {
		if requests = *c.Requests; requests < 1 {
			return userErrorf("--requests must be at least 1, not %d", requests)
		}
	}
	overrides := sim.Overrides{
		Scenario: c.Scenario, Requests: requests, RPS: rps, Concurrency: concurrency, Sessions: c.Sessions, Clients: clients, Seed: c.Seed,
		Keys: c.Keys, KeySkew: c.KeySkew, NoLocality: c.NoLocality, NoSubset: c.NoSubset,
		Strategy: c.Strategy, Latency: c.Latency, ErrorRate: c.ErrorRate, Capacity: c.Capacity, Down: c.Down,
	}
	var page *os.File
	if c.Report != "" {
		// Opened first: a long run is not lost to a path that cannot be
		// written.
		if page, err = os.Create(c.Report); err != nil {
			return userErrorf("--report: %v", err)
		}
		defer func() {
			if page != nil {
				page.Close()
				os.Remove(c.Report)
			}
		}()
	}
	writePage := func(runs []*sim.Report) error {
		if page == nil {
			return nil
		}
		if err := writePage(a, page, c.Report, runs); err != nil {
			return err
		}
		page = nil
		return nil
	}
	if len(c.Compare) > 0 {
		results, err := c.compare(a, cfg, svc, discovered, overrides)
		if err != nil {
			return err
		}
		runs := make([]*sim.Report, len(results))
		for i, r := range results {
			runs[i] = r.Report
		}
		if err := writePage(runs); err != nil {
			return err
		}
		if c.Output == "json" {
			return writeJSON(a.stdout, map[string]any{"comparison": results})
		}
		writeComparison(a.stdout, results)
		return nil
	}
	report, simCfg, err := c.run(a, cfg, svc, discovered, overrides)
	if err != nil {
		return err
	}
	if c.Keys > 0 && !simCfg.UsesKeys() {
		return errUnusedKeys(report.Strategy)
	}
	if err := writePage([]*sim.Report{report}); err != nil {
		return err
	}
	for _, o := range simCfg.Outages {
		if end := time.Duration(report.SimulatedTime); o.From >= end {
			fmt.Fprintf(a.stderr, "pvlb: warning: --down %s@%s had no effect: the run ended at %s, before it began.\n", o.Server, o.From, end.Round(time.Millisecond))
		}
	}
	if c.Output == "json" {
		return writeJSON(a.stdout, report)
	}
	writeReport(a.stdout, report)
	return nil
}

// run assembles and runs one simulation.
func (c *SimulateCmd) run(a *app, cfg *config.Config, svc *config.Service, discovered []lb.EndpointSpec, o sim.Overrides) (*sim.Report, *sim.Config, error) {
	simCfg, err := sim.Assemble(cfg, svc, discovered, o)
	if err != nil {
		return nil, nil, userError{err}
	}
	if capacity, bounded := simCfg.Capacity(); bounded && simCfg.PeakRPS() > capacity && !c.warned {
		// Said before the run, which may then take a while.
		c.warned = true
		fmt.Fprintf(a.stderr, "pvlb: warning: the offered load, up to %g requests a second, is over what the servers can answer, about %.0f a second (capacity over mean latency): queues will grow, and a server with %d waiting refuses more.\n",
			simCfg.PeakRPS(), capacity, sim.MaxQueue)
	}
	simCfg.Logger = a.log
	finishProgress := c.progress(a, simCfg)
	report, err := sim.RunContext(a.ctx, *simCfg)
	finishProgress()
	if err != nil {
		if a.ctx.Err() != nil {
			return nil, nil, err // interrupted
		}
		return nil, nil, userError{err}
	}
	return report, simCfg, nil
}

// compared is one strategy's part of a comparison: its report, and its
// figures as multiples of the first strategy's.
type compared struct {
	*sim.Report
	P99VsFirst  float64 `json:"p99_vs_first"`
	P999VsFirst float64 `json:"p999_vs_first"`
}

// compare runs the same traffic through each strategy of --compare.
func (c *SimulateCmd) compare(a *app, cfg *config.Config, svc *config.Service, discovered []lb.EndpointSpec, o sim.Overrides) ([]compared, error) {
	if c.Strategy != "" {
		return nil, userErrorf("--strategy and --compare exclude each other: list every strategy to run in --compare")
	}
	var names []string
	for _, n := range c.Compare {
		if n == "all" {
			names = append(names, lb.StrategyKinds()...)
			continue
		}
		names = append(names, n)
	}
	var results []compared
	keysUsed := false
	for _, name := range names {
		o.Strategy = name
		report, simCfg, err := c.run(a, cfg, svc, discovered, o)
		if err != nil {
			return nil, err
		}
		keysUsed = keysUsed || simCfg.UsesKeys()
		r := compared{Report: report}
		if len(results) > 0 {
			first := results[0].Latency
			r.P99VsFirst = ratio(report.Latency.P99, first.P99)
			r.P999VsFirst = ratio(report.Latency.P999, first.P999)
		} else {
			r.P99VsFirst, r.P999VsFirst = 1, 1
		}
		results = append(results, r)
	}
	if o.Keys > 0 && !keysUsed {
		return nil, errUnusedKeys(strings.Join(names, ", "))
	}
	return results, nil
}

func errUnusedKeys(strategies string) error {
	return userErrorf("--keys has no effect: %s does not hash keys (ring_hash and maglev do) and no server caches them (cache_keys in a simulation server block)", strategies)
}

// commandLine is the command as a shell would take it back.
func commandLine(args []string) string {
	quoted := []string{"pvlb"}
	for _, arg := range args {
		if arg == "" || strings.Trim(arg, shellSafe) != "" {
			arg = "'" + strings.ReplaceAll(arg, "'", `'\''`) + "'"
		}
		quoted = append(quoted, arg)
	}
	return strings.Join(quoted, " ")
}

// shellSafe are the characters an argument may hold unquoted.
const shellSafe = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=,:@%+"

func ratio(a, b sim.Millis) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func writeComparison(w io.Writer, results []compared) {
	r := results[0].Report
	fmt.Fprintf(w, "Compared %d strategies on %d requests to service %q, %s, seed %d: each saw the same arrivals and the same random draws per request.\n\n",
		len(results), r.Requests, r.Service, r.Traffic(), r.Seed)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	cached := false
	for _, c := range results {
		_, ok := c.CacheHitRate()
		cached = cached || ok
	}
	header := "STRATEGY\tP50\tP90\tP99\tP99.9\tFAILED\tRETRIES\tBUSIEST\tQUIETEST\tP99 VS FIRST\tP99.9 VS FIRST"
	if cached {
		header += "\tCACHE HITS"
	}
	fmt.Fprintln(tw, header)
	for _, c := range results {
		busiest, quietest := 0.0, 1.0
		for _, s := range c.Servers {
			busiest, quietest = max(busiest, s.Share), min(quietest, s.Share)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s", c.Label(),
			dur(c.Latency.P50), dur(c.Latency.P90), dur(c.Latency.P99), dur(c.Latency.P999),
			fmt.Sprintf("%d (%s)", c.Failed, pct(float64(c.Failed)/float64(c.Requests))), c.Retries,
			pct(busiest), pct(quietest), sim.FormatRatio(c.P99VsFirst), sim.FormatRatio(c.P999VsFirst))
		if cached {
			rate, _ := c.CacheHitRate()
			fmt.Fprintf(tw, "\t%s", pct(rate))
		}
		fmt.Fprintln(tw)
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "\nLatency is end to end, of requests that succeeded; BUSIEST and QUIETEST are the largest and smallest server shares.")
}

// pickService returns the named service, or the only one.
func pickService(cfg *config.Config, name string) (*config.Service, error) {
	names := cfg.ServiceNames()
	if name != "" {
		if s, ok := cfg.Service(name); ok {
			return s, nil
		}
		return nil, userErrorf("no service %q in the configuration (services: %s)", name, joinNames(names))
	}
	switch len(names) {
	case 0:
		return nil, userErrorf("the configuration declares no service")
	case 1:
		return cfg.Services[0], nil
	}
	return nil, userErrorf("the configuration declares %d services (%s); choose one with --service", len(names), joinNames(names))
}

// progress shows a progress bar on a terminal once a run has taken more
// than a second; it returns a function that clears it.
func (c *SimulateCmd) progress(a *app, cfg *sim.Config) func() {
	if !isTerminal(a.stderr) || c.Output == "json" {
		return func() {}
	}
	start := time.Now()
	var bar *progressbar.ProgressBar
	cfg.Progress = func(done int) {
		if bar == nil {
			if time.Since(start) < time.Second {
				return
			}
			bar = progressbar.NewOptions(cfg.Requests,
				progressbar.OptionSetWriter(a.stderr),
				progressbar.OptionSetDescription("simulating"),
				progressbar.OptionShowCount(),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionClearOnFinish(),
			)
		}
		_ = bar.Set(done)
	}
	return func() {
		if bar != nil {
			_ = bar.Finish()
		}
	}
}

// writeReport prints the report as a table with a bar per share.
func writeReport(w io.Writer, r *sim.Report) {
	if r.Measured {
		fmt.Fprintf(w, "Measured %d calls to service %q: strategy %s, %s.\n\n", r.Requests, r.Service, r.Label(), r.Traffic())
	} else {
		fmt.Fprintf(w, "Simulated %d requests to service %q: strategy %s, %s, seed %d.\n\n", r.Requests, r.Service, r.Label(), r.Traffic(), r.Seed)
	}

	var table strings.Builder
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	zoned := len(r.Zones) > 0
	if zoned {
		fmt.Fprint(tw, "ZONE\t")
	}
	fmt.Fprintln(tw, "SERVER\tWEIGHT\tREQUESTS\tSHARE\tEXPECTED\tERRORS\tP50\tP90\tP99\tEWMA\tPEAK")
	for _, s := range r.Servers {
		if zoned {
			fmt.Fprint(tw, cmp.Or(s.Zone, "-")+"\t")
		}
		p50, p90, p99, ewma := "-", "-", "-", "-"
		if s.Requests > s.Errors {
			p50, p90, p99 = dur(s.AttemptTime.P50), dur(s.AttemptTime.P90), dur(s.AttemptTime.P99)
		}
		if s.LatencyEWMA > 0 {
			ewma = dur(s.LatencyEWMA)
		}
		peak := strconv.Itoa(s.PeakInFlight)
		if r.Measured {
			peak = "-" // a real server's own count, which the client cannot see
		}
		expected := "-"
		if s.ExpectedShare > 0 {
			expected = pct(s.ExpectedShare)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n",
			s.ID, s.Weight, s.Requests, pct(s.Share), expected, s.Errors,
			p50, p90, p99, ewma, peak, bar(s.Share, 30))
	}
	_ = tw.Flush()
	for _, line := range strings.Split(strings.TrimSuffix(table.String(), "\n"), "\n") {
		fmt.Fprintln(w, strings.TrimRight(line, " ")) // the bar column pads rows without a bar
	}

	fmt.Fprintln(w)
	failedPct := 0.0
	if r.Requests > 0 {
		failedPct = float64(r.Failed) / float64(r.Requests)
	}
	fmt.Fprintf(w, "Requests   %d succeeded, %d failed (%s); %d retries, %d requests saved by a retry\n",
		r.Succeeded, r.Failed, pct(failedPct), r.Retries, r.Recovered)
	if r.Hedges > 0 {
		fmt.Fprintf(w, "Hedging    %d copies sent after a request's first (%.1f%% more requests), %d answered first\n", r.Hedges, 100*float64(r.Hedges)/float64(max(r.Requests, 1)), r.HedgeWins)
	}
	if l := r.Limited; l != nil {
		fmt.Fprintf(w, "Limits     %d requests refused at once (every server at its cap or rate); %d picks skipped a server at max_requests_per_endpoint, %d one out of its rate_limit\n",
			r.Overloaded, l.BreakerSkips, l.RateLimitSkips)
	}
	if r.RetriesRefused > 0 || r.PerTryTimeouts > 0 || r.PushbackStops > 0 {
		fmt.Fprintf(w, "Retries    %d refused by the retry budget, %d attempts ended by the per-try timeout", r.RetriesRefused, r.PerTryTimeouts)
		if r.PushbackStops > 0 {
			fmt.Fprintf(w, ", %d not retried at their server's word (pushback)", r.PushbackStops)
		}
		fmt.Fprintln(w)
	}
	if zoned {
		fmt.Fprint(w, "Zones     ")
		for _, z := range r.Zones {
			fmt.Fprintf(w, " %s %s", cmp.Or(z.Zone, "(none)"), pct(z.Share))
		}
		switch {
		case r.CrossZone != nil && r.LocalZone != "":
			fmt.Fprintf(w, "; %s of attempts left the local zone %s", pct(*r.CrossZone), r.LocalZone)
		case r.CrossZone != nil:
			fmt.Fprintf(w, "; %s of attempts left their client's zone", pct(*r.CrossZone))
		}
		fmt.Fprintln(w)
	}
	if f := r.Fleet; f != nil {
		subsets := "no subsets"
		if f.SubsetSize > 0 {
			subsets = fmt.Sprintf("subsets of %d", f.SubsetSize)
		}
		fmt.Fprintf(w, "Fleet      %d clients, %s: each server held by %d–%d clients (%d connections), its requests %.2f–%.2f× the mean\n",
			f.Clients, subsets, f.MinHolders, f.MaxHolders, holders(r), f.MinLoad, f.MaxLoad)
	}
	if rate, ok := r.CacheHitRate(); ok {
		fmt.Fprintf(w, "Cache      %s hits: %d of %d keyed attempts found their key in their server's cache\n", pct(rate), r.CacheHits, r.CacheHits+r.CacheMisses)
	}
	fmt.Fprintf(w, "Latency    p50 %s  p90 %s  p99 %s  p99.9 %s  max %s (end to end, successful requests)\n",
		dur(r.Latency.P50), dur(r.Latency.P90), dur(r.Latency.P99), dur(r.Latency.P999), dur(r.Latency.Max))
	if r.Measured {
		fmt.Fprintf(w, "Time       %s, %.0f calls/s succeeded\n", dur(r.SimulatedTime), r.Throughput)
	} else {
		fmt.Fprintf(w, "Time       %s simulated, %.0f requests/s succeeded\n", dur(r.SimulatedTime), r.Throughput)
	}
	if r.Dropped > 0 {
		fmt.Fprintf(w, "Dropped    %d attempts refused by a full queue (%d waiting on one server)\n", r.Dropped, sim.MaxQueue)
	}
	if r.NoHealthy > 0 {
		fmt.Fprintf(w, "Warning    %d picks found no healthy server\n", r.NoHealthy)
	}
	if len(r.Events) > 0 {
		fmt.Fprintln(w, "\nEvents")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, e := range r.Events {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", dur(sim.Millis(e.At)), e.Server, e.What)
		}
		_ = tw.Flush()
	}
}

// writePage writes runs into page as the HTML report, closes it and says
// where it is; on an error the caller removes the half-written file.
func writePage(a *app, page *os.File, path string, runs []*sim.Report) error {
	err := simreport.Write(redacting{page}, simreport.Page{Command: commandLine(a.args), Runs: runs})
	if cerr := page.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("--report: %w", err)
	}
	fmt.Fprintf(a.stderr, "pvlb: wrote the report to %s\n", path)
	return nil
}

// holders is the fleet's connections: each server's clients, summed.
func holders(r *sim.Report) int {
	n := 0
	for _, s := range r.Servers {
		n += s.Holders
	}
	return n
}

func pct(f float64) string { return strconv.FormatFloat(f*100, 'f', 1, 64) + "%" }

// dur formats a duration compactly: 850µs, 12.3ms, 1.25s.
func dur(m sim.Millis) string {
	d := time.Duration(m)
	switch {
	case d < time.Millisecond:
		return strconv.FormatInt(d.Microseconds(), 10) + "µs"
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + "ms"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s"
}

// bar draws share as a bar of up to width cells, in eighths of a cell.
func bar(share float64, width int) string {
	eighths := int(math.Round(share * float64(width*8)))
	full, part := eighths/8, eighths%8
	b := strings.Repeat("█", full)
	if part > 0 {
		b += string([]rune("▏▎▍▌▋▊▉")[part-1])
	}
	return b
}
