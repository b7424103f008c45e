package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/peervault/pvlb/pkg/config"
	"github.com/peervault/pvlb/pkg/invoke"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/loadgen"
	"github.com/peervault/pvlb/pkg/rpc"
	"github.com/peervault/pvlb/pkg/service"
	"github.com/peervault/pvlb/pkg/sim"
)

// LoadCmd drives real traffic through the balancer to real servers.
type LoadCmd struct {
	callFlags   `embed:""`
	RPS         float64       `name:"rps" placeholder:"N" help:"Start N calls a second, evenly spaced (open loop)."`
	Concurrency int           `placeholder:"N" help:"Instead of a rate, keep N calls in flight (closed loop)."`
	Duration    time.Duration `placeholder:"DURATION" help:"Run this long (at most 24h)."`
	Total       int           `placeholder:"N" help:"Make this many calls (with --duration too, whichever comes first)."`
	Sessions    int           `placeholder:"K" help:"Spread the calls over K session ids (sticky sessions, or the keys of ring_hash and maglev)."`
	Keys        int           `placeholder:"N" help:"Give each call one of N hash keys (lb.WithHashKey), for ring_hash and maglev."`
	KeySkew     float64       `name:"key-skew" placeholder:"S" help:"Draw --keys from a Zipf distribution of exponent S (above 1) rather than uniformly."`
	Output      string        `short:"o" default:"text" enum:"text,json" help:"Output format of the final report: ${enum}, the shape of simulate's."`
	Report      string        `placeholder:"FILE.html" type:"path" help:"Also write the run as an HTML page, as simulate --report does."`
	MetricsAddr string        `name:"metrics-addr" placeholder:"HOST:PORT" help:"Serve the balancer's metrics in Prometheus's text format at http://HOST:PORT/metrics while the run lasts (docs/metrics.md). Off by default."`
	Watch       bool          `help:"Reload the configuration while the run goes on, when its files change or on SIGHUP: strategy, policies, health checks, connection settings and discovery change in place without stopping a call; a configuration with errors is refused and the running one stays."`
}

// Help is shown by pvlb load --help.
func (c *LoadCmd) Help() string {
	return `Sends real calls through the configured service's balancer (the same
strategy, health checks, retries and failover as the Go library) at a
rate (--rps, open loop) or with a number in flight (--concurrency, closed
loop), for a --duration or a --total, and reports what happened in the
shape of pvlb simulate's report: per server the calls, share, errors and
latency, then the totals. On a terminal the run is shown as it goes, twice a
second: the totals, each server's health, calls, share, errors and
latency, and the latest changes of health, ejections and discovery.
Otherwise each change is a line as it happens, and the totals a line
every five seconds. SIGINT stops the run early and reports what was
measured.

With --watch the configuration is reloaded while the run goes on, when
its files change or pvlb gets SIGHUP: the service's strategy, policies,
health checks, connection settings and discovery change in place, calls
in flight finish where they are, and each reload (or refusal, with the
configuration's errors) shows among the latest changes.

Put a prediction beside reality: run pvlb simulate with the same rate
and pvlb load against the servers, and compare the two reports.

Examples:
  pvlb load -c examples/basic.hcl /peervault.PeerVaultService/GetUserData -d '{"user_id":"u1"}' --rps 200 --duration 10s
  pvlb load -c examples/basic.hcl /peervault.PeerVaultService/GetUserData -d '{"user_id":"u1"}' --concurrency 8 --total 5000 -o json
  pvlb load -c examples/basic.hcl /peervault.PeerVaultService/GetUserData -d '{"user_id":"u1"}' --rps 100 --duration 10m --watch`
}

// Run loads.
func (c *LoadCmd) Run(a *app) error {
	switch {
	case c.KeySkew != 0 && c.Keys == 0:
		return userErrorf("--key-skew needs --keys, the number of keys to draw from")
	case c.KeySkew != 0 && !(c.KeySkew > 1 && c.KeySkew <= 100):
		return userErrorf("--key-skew is a Zipf exponent above 1 (1.1 is mild, 2 steep; at most 100), not %g", c.KeySkew)
	case c.Keys < 0 || c.Sessions < 0:
		return userErrorf("--keys and --sessions must not be negative")
	case c.Sessions > 0 && c.Session != "":
		return userErrorf("--session and --sessions exclude each other: one session id, or K of them")
	}
	cfg := loadgen.Config{RPS: c.RPS, Concurrency: c.Concurrency, Duration: c.Duration, Total: c.Total, Timeout: c.Timeout}
	if err := cfg.Validate(); err != nil {
		return userError{err}
	}
	meter, stopMetrics, err := serveMetrics(a, c.MetricsAddr)
	if err != nil {
		return err
	}
	defer stopMetrics()
	call, err := c.start(a, false, meter)
	if err != nil {
		return err
	}
	defer call.svc.Close()
	if c.Keys > 0 && !call.svc.Balancer.HashesKeys() {
		return userErrorf("--keys has no effect: strategy %q of service %q is %s, which does not hash keys (ring_hash and maglev do)", call.cfg.Strategy.Name, call.cfg.Name, call.cfg.Strategy.Kind)
	}
	if c.Sessions > 0 && !call.cfg.Strategy.Sticky.Enabled && !call.svc.Balancer.HashesKeys() {
		return userErrorf("--sessions needs sticky sessions or a hashing strategy (ring_hash, maglev), but strategy %q of service %q is %s without a sticky_session block", call.cfg.Strategy.Name, call.cfg.Name, call.cfg.Strategy.Kind)
	}
	cfg.Call = c.caller(call)
	var page *os.File
	if c.Report != "" {
		// Opened first: a run is not lost to a path that cannot be written.
		if page, err = os.Create(c.Report); err != nil {
			return userErrorf("--report: %v", err)
		}
		defer func() {
			if page != nil { // not written: leave no half a page behind
				page.Close()
				os.Remove(c.Report)
			}
		}()
	}
	var reloads *reloader
	// latest is the service's configuration as the run ends, for the
	// report's strategy.
	var latestMu sync.Mutex
	latest := call.cfg
	if c.Watch {
		var stopReloading func()
		reloads, stopReloading, err = a.followConfig(func(next *config.Config) error {
			svcCfg, ok := next.Service(call.cfg.Name)
			if !ok {
				return fmt.Errorf("the new configuration has no service %q", call.cfg.Name)
			}
			if err := call.svc.Reload(a.ctx, svcCfg, service.Options{Config: next, Host: a.pluginHost(next)}); err != nil {
				return err
			}
			latestMu.Lock()
			latest = svcCfg
			latestMu.Unlock()
			return nil
		})
		if err != nil {
			return err
		}
		defer stopReloading()
	}
	cfg.Progress, cfg.ProgressEvery = c.progress(a, call.svc, reloads)
	m := sim.NewMeasurement(call.cfg.Name, call.cfg.Strategy.Kind, call.cfg.Strategy.Name, call.svc.Balancer.Endpoints())
	if l := call.cfg.Locality; l != nil {
		m.SetLocalZone(l.LocalZone)
	}
	// call.ctx carries the -H metadata and --session to every call, and
	// ends with the command.
	report, err := loadgen.Run(call.ctx, cfg, m)
	if err != nil && a.ctx.Err() == nil {
		return userError{err}
	}
	latestMu.Lock()
	report.Strategy, report.StrategyName = latest.Strategy.Kind, latest.Strategy.Name
	latestMu.Unlock()
	if report.StrategyName == "default" {
		report.StrategyName = ""
	}
	if page != nil {
		if err := writePage(a, page, c.Report, []*sim.Report{report}); err != nil {
			return err
		}
		page = nil
	}
	if c.Output == "json" {
		return writeJSON(a.stdout, report)
	}
	writeReport(a.stdout, report)
	return nil
}

// caller returns the call loadgen makes: the method through the
// service's client, with the session or key of call number seq; ctx
// comes from call.ctx.
func (c *LoadCmd) caller(call *startedCall) loadgen.Call {
	var keys func() int
	if c.Keys > 0 {
		var mu sync.Mutex
		r := rand.New(rand.NewPCG(1, 2))
		if c.KeySkew > 0 {
			z := rand.NewZipf(r, c.KeySkew, 1, uint64(c.Keys-1))
			keys = func() int { mu.Lock(); defer mu.Unlock(); return int(z.Uint64()) }
		} else {
			keys = func() int { mu.Lock(); defer mu.Unlock(); return r.IntN(c.Keys) }
		}
	}
	return func(ctx context.Context, seq int) ([]sim.MeasuredAttempt, error) {
		if c.Sessions > 0 {
			ctx = lb.WithSession(ctx, fmt.Sprintf("session-%d", seq%c.Sessions))
		}
		if keys != nil {
			ctx = lb.WithHashKey(ctx, fmt.Sprintf("key-%d", keys()))
		}
		report := &rpc.CallReport{}
		err := invoke.Call(ctx, call.svc.Client, call.method, call.requests, func(proto.Message) error { return nil }, report)
		attempts := make([]sim.MeasuredAttempt, len(report.Attempts))
		for i, at := range report.Attempts {
			attempts[i] = sim.MeasuredAttempt{Server: at.Server, Address: at.Address, Took: at.Latency, Failed: at.Err != nil}
		}
		return attempts, err
	}
}

// progress shows the run as it goes. On a terminal: every loadRefresh, the
// totals, a table of the servers (health, calls, share, errors, latency)
// and the latest changes of health, ejections and discovery, redrawn in
// place. Otherwise: each change as a line when it happens (looked for
// every loadRefresh), and the totals every five seconds.
func (c *LoadCmd) progress(a *app, svc *service.Service, reloads *reloader) (func(*sim.Report), time.Duration) {
	live := isTerminal(a.stderr)
	seen := map[string]map[string]serverState{}
	var recent []watchEvent
	looks := 0
	return func(r *sim.Report) {
		_, events := watchLook(svc, seen, reloads.take(), looks == 0)
		if looks == 0 {
			events = nil // the servers as the run starts: the table shows them
		}
		looks++
		elapsed := time.Duration(r.SimulatedTime)
		totals := fmt.Sprintf("%s  %d calls  %.0f/s  p50 %s  p99 %s  failed %d  strategy %s",
			elapsed.Round(time.Second), r.Requests, float64(r.Requests)/max(elapsed.Seconds(), 1e-9),
			dur(r.Latency.P50), dur(r.Latency.P99), r.Failed, svc.Balancer.GetServerStats().Strategy)
		if !live {
			for _, e := range events {
				fmt.Fprintln(a.stderr, e.text())
			}
			if looks%(5*int(time.Second/loadRefresh)) == 0 {
				fmt.Fprintln(a.stderr, totals)
			}
			return
		}
		recent = append(recent, events...)
		recent = recent[max(0, len(recent)-8):]
		var b strings.Builder
		b.WriteString("\x1b[H\x1b[2J" + totals + "\n\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SERVER\tHEALTH\tCALLS\tSHARE\tERRORS\tP50\tP99")
		for _, s := range r.Servers {
			health := "-"
			if e, ok := svc.Balancer.Endpoint(s.ID); ok {
				health = e.Health().String()
				if e.Ejected() {
					health += ", ejected"
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%s\n", s.ID, health, s.Requests, pct(s.Share), s.Errors, dur(s.AttemptTime.P50), dur(s.AttemptTime.P99))
		}
		_ = tw.Flush()
		if len(recent) > 0 {
			b.WriteString("\nLatest changes\n")
			for _, e := range recent {
				b.WriteString("  " + e.text() + "\n")
			}
		}
		fmt.Fprint(a.stderr, b.String())
	}, loadRefresh
}

// loadRefresh is how often pvlb load looks for changes and redraws its
// view: within it a reload, a health change or an ejection shows.
const loadRefresh = 500 * time.Millisecond
