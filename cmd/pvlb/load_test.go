package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/pkg/demoserver"
)

// pvlb load reports a server's health changing while it runs, a line as
// it happens when its output is not a terminal; SIGINT ends the run
// early with the report of what was measured, exit 0.
func TestLoadReportsChangesAndStopsOnSIGINT(t *testing.T) {
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
	cmd := exec.Command(pvlbBinary, "load", "-c", cfg, "/peervault.PeerVaultService/GetUserData", "-d", `{"user_id":"u1"}`,
		"--concurrency", "2", "--duration", "5m")
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	timer := time.AfterFunc(60*time.Second, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	testtools.WaitFor(t, "calls to reach server2", func() bool { return servers[1].Calls() > 20 })
	servers[1].SetServing(false)
	lines := bufio.NewScanner(stderr)
	found := ""
	for found == "" && lines.Scan() {
		if line := lines.Text(); strings.Contains(line, "server2") && strings.Contains(line, "healthy → unhealthy") {
			found = line
		}
	}
	if found == "" {
		t.Fatal("no line said server2 turned unhealthy")
	}
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
	out := stdout.String()
	t.Logf("%s\n%s", found, out)
	if !strings.Contains(out, "Measured ") || !strings.Contains(out, "server1") {
		t.Errorf("no report after SIGINT:\n%s", out)
	}
	if !strings.Contains(out, " 0 failed") {
		t.Errorf("calls cut short by SIGINT were counted as failures:\n%s", out)
	}
}
