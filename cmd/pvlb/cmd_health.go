package main

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/peervault/pvlb/pkg/config"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/rpc"
	"github.com/peervault/pvlb/pkg/service"
)

// HealthCmd reports the health of every endpoint.
type HealthCmd struct {
	Service string `short:"s" help:"Report only this service (default: every service)."`
	Force   bool   `help:"Check every endpoint now with grpc.health.v1, concurrently."`
	Watch   bool   `help:"Keep checking at each health policy's interval and report every change (health, ejections, endpoints found or lost) as it happens, until interrupted: on a terminal the table redrawn in place, otherwise a line per change (JSON lines with --output json)."`
	Output  string `short:"o" default:"text" enum:"text,json" help:"Output format: ${enum}."`
	// MetricsAddr serves metrics while --watch runs.
	MetricsAddr string `name:"metrics-addr" placeholder:"HOST:PORT" help:"With --watch, serve the balancers' metrics in Prometheus's text format at http://HOST:PORT/metrics (docs/metrics.md). Off by default."`
}

// Help is shown by pvlb health --help.
func (c *HealthCmd) Help() string {
	return `Lists every endpoint of every service (or of --service) with its health
status, check latency, when it was last checked and the last error.

Without --force it reports what discovery knows: Consul's checks, say; a
static endpoint list knows nothing of health, so its endpoints show as
unknown. With --force
every endpoint is checked now with grpc.health.v1 (the health policy's
service name and timeout), and one check decides: SERVING is healthy,
anything else (NOT_SERVING, an error, no answer in time) is unhealthy.

Exit status: 0 when every service has an endpoint that may take traffic,
as the balancer sees it: healthy, or unknown (not checked yet, which a
static list without --force always is; the balancer sends such endpoints
traffic); 1 when every endpoint of some service is unhealthy (or the
configuration is invalid).

With --watch the checks keep running, and every change is reported as
it happens until interrupted (exit 0).

Examples:
  pvlb health -c examples/basic.hcl --force
  pvlb health -c examples/basic.hcl --force --output json
  pvlb health -c examples/basic.hcl --watch`
}

type serviceHealth struct {
	Service string `json:"service"`
	// Healthy says an endpoint is known healthy; Available, that one may
	// take traffic (healthy or unknown), which the exit status follows.
	Healthy   bool               `json:"healthy"`
	Available bool               `json:"available"`
	Error     string             `json:"error,omitempty"`
	Servers   []rpc.ServerHealth `json:"servers"`
}

// Run reports.
func (c *HealthCmd) Run(a *app) error {
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	services := cfg.Services
	if c.Service != "" {
		s, err := pickService(cfg, c.Service)
		if err != nil {
			return err
		}
		services = []*config.Service{s}
	}
	if len(services) == 0 {
		return userErrorf("the configuration declares no service")
	}
	if c.MetricsAddr != "" && !c.Watch {
		return userErrorf("--metrics-addr serves metrics while the command runs; it needs --watch")
	}
	if c.Watch {
		return c.watch(a, cfg, services)
	}
	report := make([]serviceHealth, len(services))
	for i, svc := range services {
		report[i] = c.check(a, cfg, svc)
	}
	if err := a.ctx.Err(); err != nil {
		return err // interrupted: the checks cut short say nothing
	}
	if c.Output == "json" {
		if err := writeJSON(a.stdout, map[string]any{"services": report}); err != nil {
			return err
		}
	} else {
		writeHealth(a.stdout, report, c.Force)
	}
	var failed []string
	for _, r := range report {
		if !r.Available {
			failed = append(failed, r.Service)
		}
	}
	if len(failed) > 0 {
		if c.Output != "json" {
			fmt.Fprintf(a.stderr, "pvlb: no endpoint may take traffic in %s: %s\n", plural(len(failed), "service", "services"), joinNames(failed))
		}
		return errReported
	}
	return nil
}

func (c *HealthCmd) check(a *app, cfg *config.Config, svcCfg *config.Service) serviceHealth {
	out := serviceHealth{Service: svcCfg.Name, Servers: []rpc.ServerHealth{}}
	svc, err := service.New(a.ctx, svcCfg, service.Options{Logger: a.log, HealthChecks: c.Force, OneShot: true, Host: a.pluginHost(cfg), Config: cfg})
	if err != nil {
		out.Error = err.Error()
		return out
	}
	defer svc.Close()
	if c.Force {
		svc.Health.ForceHealthCheckAll(a.ctx)
		out.Servers = svc.Health.GetHealthStats().Servers
	} else {
		for _, e := range svc.Balancer.Endpoints() {
			out.Servers = append(out.Servers, rpc.ServerHealth{ID: e.ID, Address: e.Address, Status: e.Health()})
		}
	}
	for _, s := range out.Servers {
		out.Healthy = out.Healthy || s.Status == lb.HealthHealthy
		out.Available = out.Available || s.Status != lb.HealthUnhealthy
	}
	return out
}

func writeHealth(w io.Writer, report []serviceHealth, forced bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tSERVER\tADDRESS\tSTATUS\tLATENCY\tCHECKED\tERROR")
	for _, r := range report {
		if len(r.Servers) == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\tunknown\t-\t-\t%s\n", r.Service, r.Error)
		}
		for _, s := range r.Servers {
			latency, checked, errText := "-", "-", s.Error
			if !s.LastChecked.IsZero() {
				latency = strconv.FormatFloat(s.LatencyMS, 'f', 1, 64) + "ms"
				checked = s.LastChecked.Format(time.TimeOnly)
			}
			if errText == "" {
				errText = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Service, s.ID, s.Address, s.Status, latency, checked, errText)
		}
	}
	_ = tw.Flush()
	if !forced {
		fmt.Fprintln(w, "\nThis is what discovery reports (a static list reports nothing); run with --force to check them now.")
	}
}
