package sim

import (
	"testing"
	"time"

	"github.com/peervault/pvlb/pkg/lb"
)

// BenchmarkSimulate reports simulated requests per second of wall time for
// the README's run shape: three servers, open loop, log-normal latencies.
func BenchmarkSimulate(b *testing.B) {
	for _, kind := range []string{lb.RoundRobin, lb.Weighted, lb.LeastConnections} {
		b.Run(kind, func(b *testing.B) {
			const n = 100000
			cfg := withBase(kind, Config{Servers: servers(5, 2, 1), Requests: n, RPS: 10000, Seed: 1,
				Outages: []Outage{{Server: "server2", From: 2 * time.Second, To: 5 * time.Second}}})
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Run(cfg); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "requests/s")
		})
	}
}
