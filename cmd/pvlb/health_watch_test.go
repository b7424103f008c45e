package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peervault/pvlb/pkg/demoserver"
)

// health --watch reports a server turning unhealthy and back as it
// happens, a line each when its output is not a terminal (JSON lines with
// --output json), and ends with exit 0 on SIGINT.
func TestHealthWatchReportsChanges(t *testing.T) {
	for _, output := range []string{"text", "json"} {
		t.Run(output, func(t *testing.T) {
			var servers []*demoserver.Server
			for i := range 2 {
				s, err := demoserver.Start("127.0.0.1:0", demoserver.Config{Name: fmt.Sprintf("server%d", i+1)}, nil)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(s.Stop)
				servers = append(servers, s)
			}
			cfg := filepath.Join(t.TempDir(), "pvlb.hcl")
			src := fmt.Sprintf(`discovery "static" "local" {
  endpoint "server1" { address = %q }
  endpoint "server2" { address = %q }
}
health_policy "quick" {
  interval            = "200ms"
  timeout             = "150ms"
  unhealthy_threshold = 1
  healthy_threshold   = 1
}
service "peervault" {
  discovery = discovery.static.local
  health    = health_policy.quick
}
`, servers[0].Addr(), servers[1].Addr())
			if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(pvlbBinary, "health", "-c", cfg, "--watch", "-o", output)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill() })
			// A watch that never prints what is awaited is killed, which
			// ends the scan.
			timer := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
			defer timer.Stop()
			lines := bufio.NewScanner(stdout)
			await := func(want ...string) string {
				t.Helper()
				for lines.Scan() {
					line := lines.Text()
					matched := true
					for _, w := range want {
						matched = matched && strings.Contains(line, w)
					}
					if matched {
						return line
					}
				}
				t.Fatalf("no line with %q before the output ended", want)
				return ""
			}
			if output == "text" {
				await("peervault", "server2", "healthy") // the first table
			} else {
				await(`"server":"server2"`, `"event":"present"`, `"to":"healthy"`)
			}
			servers[1].SetServing(false)
			var down, up string
			if output == "text" {
				down = await("server2", "healthy → unhealthy", "(status NOT_SERVING)")
			} else {
				down = await(`"server":"server2"`, `"event":"health"`, `"from":"healthy"`, `"to":"unhealthy"`, `"error":"status NOT_SERVING"`)
			}
			servers[1].SetServing(true)
			if output == "text" {
				up = await("server2", "unhealthy → healthy")
			} else {
				up = await(`"server":"server2"`, `"from":"unhealthy"`, `"to":"healthy"`)
			}
			t.Logf("%s\n%s", down, up)
			go func() {
				for lines.Scan() {
				}
			}()
			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			if ws := exitWithin(t, cmd, 2*exitGrace); ws.ExitStatus() != 0 {
				t.Errorf("exit status %d after SIGINT, want 0", ws.ExitStatus())
			}
		})
	}
}

// Endpoints a discovery plugin finds or loses while health --watch runs
// are reported as they come and go.
func TestHealthWatchReportsDiscoveryChanges(t *testing.T) {
	var addrs []string
	for i := range 2 {
		s, err := demoserver.Start("127.0.0.1:0", demoserver.Config{Name: fmt.Sprintf("server%d", i+1)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Stop)
		addrs = append(addrs, s.Addr())
	}
	cfg := pluginConfig(t, addrs[0])
	endpoints := filepath.Join(filepath.Dir(cfg), "endpoints.json")
	cmd := exec.Command(pvlbBinary, "health", "-c", cfg, "--watch", "-o", "json")
	cmd.Env = append(os.Environ(), "PVLB_PLUGIN_PATH="+pluginsDir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	timer := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	lines := bufio.NewScanner(stdout)
	await := func(want ...string) {
		t.Helper()
		for lines.Scan() {
			matched := true
			for _, w := range want {
				matched = matched && strings.Contains(lines.Text(), w)
			}
			if matched {
				return
			}
		}
		t.Fatalf("no line with %q before the output ended", want)
	}
	await(`"server":"server1"`, `"event":"present"`)
	write := func(servers ...string) {
		var list []string
		for i, addr := range servers {
			host, port, _ := strings.Cut(addr, ":")
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
	write(addrs...)
	await(`"server":"server2"`, `"event":"added"`)
	write(addrs[0])
	await(`"server":"server2"`, `"event":"removed"`)
	go func() {
		for lines.Scan() {
		}
	}()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if ws := exitWithin(t, cmd, 2*exitGrace); ws.ExitStatus() != 0 {
		t.Errorf("exit status %d after SIGINT, want 0", ws.ExitStatus())
	}
}
