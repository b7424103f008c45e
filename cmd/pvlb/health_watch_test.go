package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peervault/pvlb/internal/testtools"
)

// health --watch reports a server turning unhealthy and back as it
// happens, a line each when its output is not a terminal (JSON lines with
// --output json), and ends with exit 0 on SIGINT.
func TestHealthWatchReportsChanges(t *testing.T) {
	for _, output := range []string{"text", "json"} {
		t.Run(output, func(t *testing.T) {
			servers := testtools.DemoServers(t, 2)
			p := startPiped(t, "stdout", nil, "health", "-c", staticConfig(t, servers, true), "--watch", "-o", output)
			if output == "text" {
				p.await(t, "peervault", "server2", "healthy") // the first table
			} else {
				p.await(t, `"server":"server2"`, `"event":"present"`, `"to":"healthy"`)
			}
			servers[1].SetServing(false)
			var down, up string
			if output == "text" {
				down = p.await(t, "server2", "healthy → unhealthy", "(status NOT_SERVING)")
			} else {
				down = p.await(t, `"server":"server2"`, `"event":"health"`, `"from":"healthy"`, `"to":"unhealthy"`, `"error":"status NOT_SERVING"`)
			}
			servers[1].SetServing(true)
			if output == "text" {
				up = p.await(t, "server2", "unhealthy → healthy")
			} else {
				up = p.await(t, `"server":"server2"`, `"from":"unhealthy"`, `"to":"healthy"`)
			}
			t.Logf("%s\n%s", down, up)
			p.interrupt(t)
		})
	}
}

// Endpoints a discovery plugin finds or loses while health --watch runs
// are reported as they come and go.
func TestHealthWatchReportsDiscoveryChanges(t *testing.T) {
	servers := testtools.DemoServers(t, 2)
	cfg := pluginConfig(t, servers[0].Addr())
	endpoints := filepath.Join(filepath.Dir(cfg), "endpoints.json")
	p := startPiped(t, "stdout", nil, "health", "-c", cfg, "--watch", "-o", "json")
	p.await(t, `"server":"server1"`, `"event":"present"`)
	write := func(n int) {
		var list []string
		for i, s := range servers[:n] {
			host, port, _ := strings.Cut(s.Addr(), ":")
			list = append(list, fmt.Sprintf(`{"id": "server%d", "address": %q, "port": %s}`, i+1, host, port))
		}
		// Written whole and renamed, as the file plugin expects of a writer.
		tmp := endpoints + ".tmp"
		if err := os.WriteFile(tmp, []byte(`{"peervault": [`+strings.Join(list, ", ")+`]}`), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, endpoints); err != nil {
			t.Fatal(err)
		}
	}
	write(2)
	p.await(t, `"server":"server2"`, `"event":"added"`)
	write(1)
	p.await(t, `"server":"server2"`, `"event":"removed"`)
	p.interrupt(t)
}
