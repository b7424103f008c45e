// Package loadgen sends real calls at a rate (open loop) or with a number
// in flight (closed loop), for a duration or a total, as ghz does for one
// target, and measures them into a report of the same shape as the
// simulator's (pvlb load).
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peervault/pvlb/pkg/sim"
)

// Bounds of a run, checked by Config.Validate.
const (
	MaxRPS         = 100_000
	MaxConcurrency = 10_000
	MaxDuration    = 24 * time.Hour
	MaxTotal       = 100_000_000
	// MaxInFlight bounds an open loop's calls in flight: a slower service
	// than the rate makes waits rather than an unbounded pile of calls.
	MaxInFlight = 10_000
)

// Call makes call number seq (from 0) and returns its attempts and error.
type Call func(ctx context.Context, seq int) ([]sim.MeasuredAttempt, error)

// Config describes a run.
type Config struct {
	// RPS starts calls at this rate, evenly spaced (open loop);
	// Concurrency instead keeps that many in flight (closed loop).
	// Exactly one is set.
	RPS         float64
	Concurrency int
	// Duration and Total end the run: after this long, or this many
	// calls; at least one is set, and the first reached ends it.
	Duration time.Duration
	Total    int
	// Call makes one call; Timeout bounds each.
	Call    Call
	Timeout time.Duration
	// Progress, when set, is called before the first call and then about
	// every ProgressEvery with what was measured so far.
	Progress      func(*sim.Report)
	ProgressEvery time.Duration
}

// Validate checks the run's bounds; the error names the setting.
func (c *Config) Validate() error {
	switch {
	case (c.RPS > 0) == (c.Concurrency > 0):
		return errors.New("set exactly one of a rate (--rps, open loop) and a concurrency (--concurrency, closed loop)")
	case c.RPS < 0 || c.RPS > MaxRPS:
		return fmt.Errorf("--rps must be above 0 and at most %d, not %g", MaxRPS, c.RPS)
	case c.Concurrency < 0 || c.Concurrency > MaxConcurrency:
		return fmt.Errorf("--concurrency must be from 1 to %d, not %d", MaxConcurrency, c.Concurrency)
	case c.Duration <= 0 && c.Total <= 0:
		return errors.New("set how long to run (--duration) or how many calls to make (--total)")
	case c.Duration < 0 || c.Duration > MaxDuration:
		return fmt.Errorf("--duration must be positive and at most %s, not %s", MaxDuration, c.Duration)
	case c.Total < 0 || c.Total > MaxTotal:
		return fmt.Errorf("--total must be from 1 to %d, not %d", MaxTotal, c.Total)
	}
	return nil
}

// Run makes the calls and measures them into m; it ends early, with what
// was measured, when ctx ends. The report's traffic fields say how it was
// run.
func Run(ctx context.Context, cfg Config, m *sim.Measurement) (*sim.Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Call == nil {
		return nil, errors.New("loadgen: no call to make")
	}
	runCtx := ctx
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	start := time.Now()
	var issued atomic.Int64
	// next hands out call numbers until the total is reached.
	next := func() (int, bool) {
		n := int(issued.Add(1)) - 1
		return n, cfg.Total <= 0 || n < cfg.Total
	}
	one := func(seq int) {
		callCtx := ctx // a call started before the end finishes
		if cfg.Timeout > 0 {
			var cancel context.CancelFunc
			callCtx, cancel = context.WithTimeout(ctx, cfg.Timeout)
			defer cancel()
		}
		began := time.Now()
		attempts, err := cfg.Call(callCtx, seq)
		if err != nil && ctx.Err() != nil {
			return // cut short by the run's interruption: not a result
		}
		m.Call(attempts, began, time.Since(began), err == nil)
	}
	stopProgress := progress(runCtx, cfg, m, start)
	var wg sync.WaitGroup
	if cfg.Concurrency > 0 {
		for range cfg.Concurrency {
			wg.Go(func() {
				for runCtx.Err() == nil {
					seq, ok := next()
					if !ok {
						return
					}
					one(seq)
				}
			})
		}
	} else {
		slots := make(chan struct{}, MaxInFlight)
		interval := time.Duration(float64(time.Second) / cfg.RPS)
		timer := time.NewTimer(0)
		defer timer.Stop()
	open:
		for i := 0; ; i++ {
			select {
			case <-runCtx.Done():
				break open
			case <-timer.C:
			}
			seq, ok := next()
			if !ok {
				break
			}
			select {
			case slots <- struct{}{}:
			case <-runCtx.Done():
				break open
			}
			wg.Go(func() {
				defer func() { <-slots }()
				one(seq)
			})
			// Calls are spaced from the start, not from each other, so
			// that a late timer does not lower the rate.
			timer.Reset(time.Until(start.Add(time.Duration(i+1) * interval)))
		}
	}
	wg.Wait()
	stopProgress()
	r := m.Report(time.Since(start))
	r.RPS, r.Concurrency, r.PeakConcurrency = cfg.RPS, cfg.Concurrency, cfg.Concurrency
	return r, ctx.Err()
}

// progress calls cfg.Progress every ProgressEvery until the returned stop.
func progress(ctx context.Context, cfg Config, m *sim.Measurement, start time.Time) (stop func()) {
	if cfg.Progress == nil {
		return func() {}
	}
	every := cfg.ProgressEvery
	if every <= 0 {
		every = time.Second
	}
	// Once before the first call, so that what it reports as the start
	// is the start.
	cfg.Progress(m.Report(time.Since(start)))
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				cfg.Progress(m.Report(time.Since(start)))
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
