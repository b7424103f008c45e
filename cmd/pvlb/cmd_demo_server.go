package main

import (
	"fmt"
	"math"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/peervault/pvlb/pkg/demoserver"
	"github.com/peervault/pvlb/pkg/latency"
	"github.com/peervault/pvlb/pkg/statuscode"
)

// DemoServerCmd runs a PeerVault demo server.
type DemoServerCmd struct {
	Listen         string        `default:"127.0.0.1:50051" help:"Address to listen on; port 0 picks a free port."`
	Name           string        `help:"Name the server answers with (default: the listen address)."`
	Latency        string        `placeholder:"MODEL" help:"Delay every answer: 20ms, normal(20ms,5ms), lognormal(MEDIAN,P99) or recorded(FILE[,COLUMN])."`
	ErrorRate      float64       `placeholder:"RATE" help:"Share of calls that fail, 0 to 1, with --error-code."`
	ErrorCode      string        `default:"INTERNAL" placeholder:"CODE" help:"Status of the failures --error-rate injects, such as INTERNAL or UNAVAILABLE."`
	Pushback       *int          `placeholder:"MS" help:"Send gRPC's grpc-retry-pushback-ms trailer with each injected failure: milliseconds a client should wait before retrying, or a negative number to ask it not to retry."`
	UnhealthyAfter time.Duration `placeholder:"DURATION" help:"Report NOT_SERVING on grpc.health.v1 this long after starting."`
	Capacity       float64       `placeholder:"QPS" help:"Calls a second the server answers at full use. With it, the server reports its load with ORCA (the calls and errors a second it answers, and their share of QPS as CPU utilization) in every call's trailers and out of band, for weighted_round_robin."`
	AddrFile       string        `type:"path" placeholder:"FILE" help:"Write the address listened on to FILE once serving (handy with port 0)."`
}

// Help is shown by pvlb demo-server --help.
func (c *DemoServerCmd) Help() string {
	return `Runs a server that implements peervault.PeerVaultService (HealthCheck,
GetUserData, WatchUserEvents), grpc.health.v1 and server reflection, and
answers with its own name, so that pvlb invoke shows who served each call.

Send SIGUSR1 to flip its health status between SERVING and NOT_SERVING;
SIGINT or SIGTERM stop it gracefully.

Example: three servers for examples/basic.hcl
  pvlb demo-server --listen 127.0.0.1:50051 --name server1 &
  pvlb demo-server --listen 127.0.0.1:50052 --name server2 &
  pvlb demo-server --listen 127.0.0.1:50053 --name server3 &

With --capacity the server reports its load (ORCA), for a strategy of kind
weighted_round_robin: servers of capacities 100, 200 and 400 calls a second
get 1/7, 2/7 and 4/7 of the calls once their reports count.`
}

// Run serves until a signal stops it.
func (c *DemoServerCmd) Run(a *app) error {
	cfg := demoserver.Config{Name: c.Name, ErrorRate: c.ErrorRate, UnhealthyAfter: c.UnhealthyAfter}
	if c.Latency != "" {
		m, err := latency.Parse(c.Latency)
		if err != nil {
			return userErrorf("--latency: %v", err)
		}
		cfg.Latency = &m
	}
	if c.ErrorRate < 0 || c.ErrorRate > 1 {
		return userErrorf("--error-rate must be between 0 and 1, not %g", c.ErrorRate)
	}
	code, ok := statuscode.Parse(c.ErrorCode)
	if !ok || code == statuscode.OK {
		return userErrorf("--error-code %q is not a gRPC error status (known: %s)", c.ErrorCode, strings.Join(statuscode.Names()[1:], ", "))
	}
	cfg.ErrorCode = code
	if c.Pushback != nil {
		if c.ErrorRate == 0 {
			return userErrorf("--pushback goes with the failures --error-rate injects; set --error-rate too")
		}
		cfg.Pushback = strconv.Itoa(*c.Pushback)
	}
	if c.Capacity < 0 || math.IsNaN(c.Capacity) || math.IsInf(c.Capacity, 0) {
		return userErrorf("--capacity is calls a second, a positive number, not %g", c.Capacity)
	}
	cfg.Capacity = c.Capacity
	if cfg.Name == "" {
		cfg.Name = c.Listen
	}
	srv, err := demoserver.Start(c.Listen, cfg, a.log)
	if err != nil {
		return userError{err}
	}
	if c.AddrFile != "" {
		// Write then rename, so a reader never sees half an address.
		tmp := c.AddrFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(srv.Addr()+"\n"), 0o644); err != nil {
			srv.Stop()
			return userErrorf("--addr-file: %v", err)
		}
		if err := os.Rename(tmp, c.AddrFile); err != nil {
			srv.Stop()
			return userErrorf("--addr-file: %v", err)
		}
	}
	fmt.Fprintf(a.stdout, "%s serving peervault.PeerVaultService on %s\n", cfg.Name, srv.Addr())

	// SIGUSR1 flips health; SIGINT and SIGTERM end a.ctx (see run).
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGUSR1)
	defer signal.Stop(signals)
	for {
		select {
		case <-signals:
			srv.SetServing(!srv.Serving())
			continue
		case <-a.ctx.Done():
		}
		done := make(chan struct{})
		go func() { srv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			srv.Stop()
		}
		fmt.Fprintf(a.stdout, "%s stopped\n", cfg.Name)
		return nil
	}
}
