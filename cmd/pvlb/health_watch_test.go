package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
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
	var stderr lockedBuffer
	p := startPiped(t, "stdout", &stderr, "health", "-c", cfg, "--watch", "-o", "json", "--metrics-addr", "127.0.0.1:0")
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
	// The metrics count the plugin's updates: the first list and two more.
	_, url, ok := strings.Cut(stderr.String(), "pvlb: metrics at ")
	if !ok {
		t.Fatalf("no metrics address in:\n%s", stderr.String())
	}
	resp, err := http.Get(strings.TrimSpace(url))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`(?m)^pvlb_discovery_updates_total\{grpc_target="peervault",pvlb_discovery="file"\} (\d+)$`).FindStringSubmatch(string(body))
	if m == nil {
		t.Fatalf("no discovery updates in the metrics:\n%s", body)
	}
	if n, _ := strconv.Atoi(m[1]); n < 3 {
		t.Errorf("%d discovery updates counted, want at least 3", n)
	}
	p.interrupt(t)
}

// lockedBuffer is a buffer a process's output is copied into while a test
// reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// health --watch reloads its configuration when the file changes or on
// SIGHUP: servers added there are reported, a broken configuration is
// refused with its location and the watch goes on.
func TestHealthWatchReloads(t *testing.T) {
	servers := testtools.DemoServers(t, 2)
	cfg := staticConfig(t, servers[:1], true)
	p := startPiped(t, "stdout", nil, "health", "-c", cfg, "--watch", "-o", "json")
	p.await(t, `"server":"server1"`, `"event":"present"`)
	replaceFile(t, cfg, mustRead(t, staticConfig(t, servers, true)))
	p.await(t, `"event":"reloaded"`, `"to":"the files changed"`)
	p.await(t, `"server":"server2"`, `"event":"added"`)
	replaceFile(t, cfg, "service \"peervault\" {\n  discovery = discovery.static.nowhere\n}\n")
	p.await(t, `"event":"refused"`, `pvlb.hcl:2:`)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.await(t, `"event":"refused"`)
	replaceFile(t, cfg, mustRead(t, staticConfig(t, servers[1:], true)))
	p.await(t, `"server":"server1"`, `"event":"removed"`)
	p.interrupt(t)
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
