package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/peervault/pvlb/pkg/config"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/rpc"
	"github.com/peervault/pvlb/pkg/service"
)

// watchRefresh is how often --watch looks for changes; the checks
// themselves run at each health policy's interval.
const watchRefresh = 250 * time.Millisecond

// watchEvent is one change --watch reports: a line of text, or a line of
// JSON.
type watchEvent struct {
	Time    time.Time `json:"time"`
	Service string    `json:"service"`
	Server  string    `json:"server"`
	Address string    `json:"address"`
	// Event is "present" (a server as the watch starts, To its health),
	// "added", "removed", "health" (From and To say the change),
	// "ejected" or "returned"; for the configuration (no Service),
	// "reloaded" (To says why) or "refused" (Error says why).
	Event string `json:"event"`
	From  string `json:"from,omitempty"`
	To    string `json:"to,omitempty"`
	Error string `json:"error,omitempty"`
}

// serverState is what --watch compares between two looks.
type serverState struct {
	address string
	status  lb.HealthStatus
	ejected bool
	err     string
}

// watch keeps the services' health checks running and reports every
// change until the command is interrupted: on a terminal the table,
// redrawn in place, with the latest changes under it; otherwise the table
// once, then a line per change (JSON lines with --output json).
func (c *HealthCmd) watch(a *app, cfg *config.Config, services []*config.Service) error {
	meter, stopMetrics, err := serveMetrics(a, c.MetricsAddr)
	if err != nil {
		return err
	}
	defer stopMetrics()
	w := &watchedServices{}
	defer w.close()
	for _, svcCfg := range services {
		if err := w.start(a, cfg, svcCfg, meter); err != nil {
			if a.ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	reloads, stopReloading, err := a.followConfig(func(next *config.Config) error {
		return w.reload(a, next, c.Service, meter)
	})
	if err != nil {
		return err
	}
	defer stopReloading()
	live := isTerminal(a.stdout) && c.Output == "text"
	seen := map[string]map[string]serverState{}
	var recent []watchEvent
	tick := time.NewTicker(watchRefresh)
	defer tick.Stop()
	for first := true; ; first = false {
		running := w.list()
		report := make([]serviceHealth, len(running))
		events := reloads.take()
		for i, svc := range running {
			report[i], events = watchLook(svc, seen, events, first)
		}
		switch {
		case live && (first || len(events) > 0):
			if !first {
				recent = append(recent, events...)
			}
			recent = recent[max(0, len(recent)-10):]
			fmt.Fprint(a.stdout, "\x1b[H\x1b[2J") // home, clear
			writeHealth(a.stdout, report, true)
			fmt.Fprintf(a.stdout, "\nWatching; checks run at each health policy's interval. Ctrl-C stops.\n")
			if len(recent) > 0 {
				fmt.Fprintln(a.stdout, "\nLatest changes")
				for _, e := range recent {
					fmt.Fprintln(a.stdout, "  "+e.text())
				}
			}
		case first && c.Output == "text":
			writeHealth(a.stdout, report, true) // the "present" events, as a table
			fmt.Fprintln(a.stdout)
		case c.Output == "json":
			enc := json.NewEncoder(a.stdout)
			for _, e := range events {
				if err := enc.Encode(e); err != nil {
					return err
				}
			}
		default:
			for _, e := range events {
				fmt.Fprintln(a.stdout, e.text())
			}
		}
		select {
		case <-a.ctx.Done():
			return nil // interrupted: the watch's end
		case <-tick.C:
		}
	}
}

// watchedServices are the services health --watch runs; a reload changes
// them in place, starts those added and stops those removed.
type watchedServices struct {
	mu      sync.Mutex
	running []*service.Service
}

func (w *watchedServices) start(a *app, cfg *config.Config, svcCfg *config.Service, meter metric.MeterProvider) error {
	svc, err := service.New(a.ctx, svcCfg, service.Options{Logger: a.log, HealthChecks: true, Host: a.pluginHost(cfg), Config: cfg, Meter: meter})
	if err != nil {
		return userErrorf("service %q: %v", svcCfg.Name, err)
	}
	svc.Health.ForceHealthCheckAll(a.ctx)
	w.mu.Lock()
	w.running = append(w.running, svc)
	w.mu.Unlock()
	return nil
}

// reload applies cfg to the services running, and, unless only (--service)
// names one, starts the services it adds and stops those it no longer has.
// A service --service names must stay.
func (w *watchedServices) reload(a *app, cfg *config.Config, only string, meter metric.MeterProvider) error {
	if only != "" {
		if _, ok := cfg.Service(only); !ok {
			return fmt.Errorf("the new configuration has no service %q", only)
		}
	}
	var errs []error
	kept := map[string]bool{}
	for _, svc := range w.list() {
		next, ok := cfg.Service(svc.Name)
		if !ok {
			svc.Close()
			w.remove(svc)
			a.log.Info("service stopped: no longer in the configuration", "service", svc.Name)
			continue
		}
		kept[svc.Name] = true
		if err := svc.Reload(a.ctx, next, service.Options{Config: cfg, Host: a.pluginHost(cfg)}); err != nil {
			errs = append(errs, err)
		}
	}
	if only == "" {
		for _, svcCfg := range cfg.Services {
			if !kept[svcCfg.Name] {
				if err := w.start(a, cfg, svcCfg, meter); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

func (w *watchedServices) list() []*service.Service {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.running)
}

func (w *watchedServices) remove(svc *service.Service) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.running = slices.DeleteFunc(w.running, func(s *service.Service) bool { return s == svc })
}

func (w *watchedServices) close() {
	for _, svc := range w.list() {
		svc.Close()
	}
}

// watchLook reads svc's servers now, appends to events what changed since
// seen (on the first look, every server as "present"), and returns the
// service's table.
func watchLook(svc *service.Service, seen map[string]map[string]serverState, events []watchEvent, first bool) (serviceHealth, []watchEvent) {
	now := time.Now()
	out := serviceHealth{Service: svc.Name, Servers: []rpc.ServerHealth{}}
	checked := map[string]rpc.ServerHealth{}
	for _, s := range svc.Health.GetHealthStats().Servers {
		checked[s.ID] = s
	}
	before := seen[svc.Name]
	current := map[string]serverState{}
	for _, e := range svc.Balancer.Endpoints() {
		sh, ok := checked[e.ID]
		if !ok {
			sh = rpc.ServerHealth{ID: e.ID, Address: e.Address}
		}
		sh.Status = e.Health()
		out.Servers = append(out.Servers, sh)
		out.Healthy = out.Healthy || sh.Status == lb.HealthHealthy
		out.Available = out.Available || sh.Status != lb.HealthUnhealthy
		cur := serverState{address: e.Address, status: sh.Status, ejected: e.Ejected(), err: sh.Error}
		current[e.ID] = cur
		was, known := before[e.ID]
		event := func(kind, from, to string) {
			events = append(events, watchEvent{Time: now, Service: svc.Name, Server: e.ID, Address: e.Address, Event: kind, From: from, To: to, Error: cur.err})
		}
		switch {
		case first:
			event("present", "", cur.status.String())
		case !known:
			event("added", "", cur.status.String())
		case was.status != cur.status:
			event("health", was.status.String(), cur.status.String())
		}
		if !first && known && cur.ejected != was.ejected {
			if cur.ejected {
				event("ejected", "", "")
			} else {
				event("returned", "", "")
			}
		}
	}
	if !first {
		for id, was := range before {
			if _, ok := current[id]; !ok {
				events = append(events, watchEvent{Time: now, Service: svc.Name, Server: id, Address: was.address, Event: "removed"})
			}
		}
	}
	seen[svc.Name] = current
	return out, events
}

// text is the event as one line.
func (e watchEvent) text() string {
	what := e.Event
	switch e.Event {
	case "health":
		what = e.From + " → " + e.To
	case "added":
		what = "added (" + e.To + ")"
	case "ejected":
		what = "ejected by outlier detection"
	case "returned":
		what = "returned from ejection"
	}
	switch e.Event {
	case "reloaded":
		return fmt.Sprintf("%s  configuration reloaded (%s)", e.Time.Format(time.TimeOnly), e.To)
	case "refused":
		return fmt.Sprintf("%s  configuration refused, the running one stays: %s", e.Time.Format(time.TimeOnly), e.Error)
	}
	line := fmt.Sprintf("%s  %s  %s  %s  %s", e.Time.Format(time.TimeOnly), e.Service, e.Server, e.Address, what)
	if e.Error != "" && e.Event == "health" && e.To == lb.HealthUnhealthy.String() {
		line += "  (" + e.Error + ")"
	}
	return line
}
