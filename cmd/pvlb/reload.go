package main

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/peervault/pvlb/pkg/config"
)

// hangups hands SIGHUP to the command listening for it, which reloads its
// configuration; with no listener, SIGHUP ends the command as SIGINT does.
var hangups hangupRelay

type hangupRelay struct {
	mu sync.Mutex
	ch chan struct{}
}

// listen makes SIGHUP a reload until stop.
func (h *hangupRelay) listen() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	h.ch = ch
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		if h.ch == ch {
			h.ch = nil
		}
		h.mu.Unlock()
	}
}

// deliver passes a SIGHUP on, and reports whether a command listens.
func (h *hangupRelay) deliver() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ch == nil {
		return false
	}
	select {
	case h.ch <- struct{}{}:
	default: // a reload is already due
	}
	return true
}

// reloader reloads the configuration when its files change or pvlb gets
// SIGHUP: a configuration with errors is refused, with its diagnostics,
// and the running one stays; a sound one is handed to apply. Each outcome
// is a line in the log and an event for the command's view.
type reloader struct {
	a     *app
	apply func(*config.Config) error

	mu     sync.Mutex
	events []watchEvent // not yet taken by the view
}

// followConfig starts reloading for a; stop ends it and waits.
func (a *app) followConfig(apply func(*config.Config) error) (*reloader, func(), error) {
	r := &reloader{a: a, apply: apply}
	due := make(chan struct{}, 1)
	poke := func() {
		select {
		case due <- struct{}{}:
		default:
		}
	}
	stopFiles, err := config.WatchFiles(a.ctx, a.globals.Config, poke)
	if err != nil {
		return nil, nil, userError{err}
	}
	hup, stopHangups := hangups.listen()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-a.ctx.Done():
				return
			case <-done:
				return
			case <-hup:
				r.reload("SIGHUP")
			case <-due:
				r.reload("the files changed")
			}
		}
	})
	return r, func() {
		stopHangups()
		stopFiles()
		close(done)
		wg.Wait()
	}, nil
}

// reload loads and checks the configuration and applies it.
func (r *reloader) reload(why string) {
	a := r.a
	loader, cfg, diags := a.checkConfig()
	if diags.HasErrors() {
		a.renderDiagnostics(loader.Files(), diags)
		first := firstError(diags)
		a.log.Warn("configuration refused; the running one stays", "why", why, "errors", len(diags.Errs()), "error", first)
		r.add(watchEvent{Event: "refused", Error: first})
		return
	}
	if err := r.apply(cfg); err != nil {
		a.log.Warn("configuration not applied", "why", why, "error", err)
		r.add(watchEvent{Event: "refused", Error: err.Error()})
		return
	}
	a.log.Info("configuration reloaded", "why", why)
	r.add(watchEvent{Event: "reloaded", To: why})
}

func (r *reloader) add(e watchEvent) {
	e.Time = time.Now()
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// take returns the events since the last take; nil r has none.
func (r *reloader) take() []watchEvent {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	events := r.events
	r.events = nil
	return events
}

// firstError is the first error of diags on one line, located.
func firstError(diags hcl.Diagnostics) string {
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		what := d.Summary
		if d.Detail != "" {
			what += ": " + strings.TrimSuffix(d.Detail, ".")
		}
		if r := d.Subject; r != nil {
			return fmt.Sprintf("%s:%d:%d: %s", r.Filename, r.Start.Line, r.Start.Column, what)
		}
		return what
	}
	return ""
}
