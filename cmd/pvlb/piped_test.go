package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peervault/pvlb/pkg/demoserver"
)

// piped is a running pvlb whose stdout or stderr a test reads line by
// line.
type piped struct {
	cmd   *exec.Cmd
	lines *bufio.Scanner
	stop  *time.Timer
}

// startPiped starts pvlb with args (with the bundled plugins on its
// path) and reads the named output, "stdout" or "stderr"; the other goes
// to other, when set. It is killed at the end of the test, or after a
// minute, which ends any read.
func startPiped(t *testing.T, output string, other io.Writer, args ...string) *piped {
	t.Helper()
	cmd := exec.Command(pvlbBinary, args...)
	cmd.Env = append(os.Environ(), "PVLB_PLUGIN_PATH="+pluginsDir)
	pipe := cmd.StdoutPipe
	cmd.Stderr = other
	if output == "stderr" {
		pipe, cmd.Stderr, cmd.Stdout = cmd.StderrPipe, nil, other
	}
	r, err := pipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &piped{cmd: cmd, lines: bufio.NewScanner(r), stop: time.AfterFunc(time.Minute, func() { _ = cmd.Process.Kill() })}
	t.Cleanup(func() { p.stop.Stop(); _ = cmd.Process.Kill() })
	return p
}

// await returns the first line holding every one of want; the test fails
// when the output ends first.
func (p *piped) await(t *testing.T, want ...string) string {
	t.Helper()
	for p.lines.Scan() {
		line, matched := p.lines.Text(), true
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

// interrupt reads the rest of the output, sends SIGINT and checks that
// pvlb ends with exit 0.
func (p *piped) interrupt(t *testing.T) {
	t.Helper()
	go func() {
		for p.lines.Scan() {
		}
	}()
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if ws := exitWithin(t, p.cmd, 2*exitGrace); ws.ExitStatus() != 0 {
		t.Errorf("exit status %d after SIGINT, want 0", ws.ExitStatus())
	}
}

// staticConfig writes a configuration whose service "peervault" lists
// servers, checked every 200ms (one result deciding) when quickHealth,
// and returns its path.
func staticConfig(t *testing.T, servers []*demoserver.Server, quickHealth bool) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("discovery \"static\" \"local\" {\n")
	for _, s := range servers {
		fmt.Fprintf(&b, "  endpoint %q { address = %q }\n", s.Name(), s.Addr())
	}
	b.WriteString("}\nservice \"peervault\" {\n  discovery = discovery.static.local\n")
	if quickHealth {
		b.WriteString("  health    = health_policy.quick\n}\nhealth_policy \"quick\" {\n  interval            = \"200ms\"\n  timeout             = \"150ms\"\n  unhealthy_threshold = 1\n  healthy_threshold   = 1\n")
	}
	b.WriteString("}\n")
	path := filepath.Join(t.TempDir(), "pvlb.hcl")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
