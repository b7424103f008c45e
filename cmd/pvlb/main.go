// Command pvlb checks, simulates and drives client-side load balancing for
// gRPC services, configured in HCL.
package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/peervault/pvlb/pkg/discovery"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// exitGrace is how long a command has, after SIGINT, SIGTERM, SIGHUP or
// a closed output pipe, to stop its plugins and return; then (or at a
// second signal) pvlb kills them and exits at once.
const exitGrace = 5 * time.Second

// run is Main for a process: the signals that end a command, and a closed
// output pipe, cancel its context, and whatever it was doing, every plugin
// process ends with it. A command ended so exits 128 + the signal's
// number, as a shell reports it.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &stopper{cancel: cancel, done: make(chan struct{}), again: make(chan struct{}, 1)}
	defer close(s.done)

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	// Caught so that a write to a closed pipe fails with EPIPE rather than
	// killing pvlb before it stops its plugins; a closed stdout or stderr
	// is noticed where it is written (pipeWatch), other pipes' errors
	// where they occur.
	pipes := make(chan os.Signal, 1)
	signal.Notify(pipes, syscall.SIGPIPE)
	defer signal.Stop(pipes)
	go func() {
		for {
			select {
			case sig := <-sigs:
				if sig == syscall.SIGHUP && hangups.deliver() {
					continue // the command reloads its configuration
				}
				s.stop(sig.(syscall.Signal))
			case <-pipes:
			case <-s.done:
				return
			}
		}
	}()
	status := MainContext(ctx, args, pipeWatch{stdout, s}, pipeWatch{stderr, s})
	if sig := s.signal(); sig != 0 && status != 0 {
		return 128 + int(sig)
	}
	return status
}

// stopper ends a command: the first stop cancels its context and gives it
// exitGrace to return; a second stop, or the end of the grace, kills every
// plugin process and exits.
type stopper struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when the command returned
	again  chan struct{}
	mu     sync.Mutex
	sig    syscall.Signal
}

func (s *stopper) stop(sig syscall.Signal) {
	s.mu.Lock()
	first := s.sig == 0
	if first {
		s.sig = sig
	}
	s.mu.Unlock()
	if !first {
		select {
		case s.again <- struct{}{}:
		default:
		}
		return
	}
	s.cancel()
	go func() {
		t := time.NewTimer(exitGrace)
		defer t.Stop()
		select {
		case <-s.done:
			return
		case <-s.again:
		case <-t.C:
		}
		discovery.KillAll()
		os.Exit(128 + int(sig))
	}()
}

func (s *stopper) signal() syscall.Signal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sig
}

// pipeWatch stops the command when its output pipe is closed (the reader
// went away: pvlb ... | head), as SIGPIPE would, but after its plugins.
type pipeWatch struct {
	w io.Writer
	s *stopper
}

func (p pipeWatch) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	if errors.Is(err, syscall.EPIPE) {
		p.s.stop(syscall.SIGPIPE)
	}
	return n, err
}
