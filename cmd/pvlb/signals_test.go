package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/internal/testtools/procstate"
	"github.com/peervault/pvlb/pkg/demoserver"
)

// longInvoke starts pvlb invoking a demo server many times through the
// file plugin, with debug logs, and returns it once the plugin runs,
// with the plugin's pid and pvlb's standard error still being read.
func longInvoke(t *testing.T, extra ...string) (cmd *exec.Cmd, pluginPid int, stderr io.ReadCloser) {
	t.Helper()
	srv, err := demoserver.Start("127.0.0.1:0", demoserver.Config{Name: "server1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	cfg := pluginConfig(t, srv.Addr())
	args := append([]string{"invoke", "-c", cfg, "/peervault.PeerVaultService/GetUserData", "-d", `{"user_id":"u"}`, "--count", "100000000"}, extra...)
	return startFollowing(t, args...)
}

// pluginConfig writes a configuration whose one service finds addr
// through the file plugin, and returns its path.
func pluginConfig(t *testing.T, addr string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	endpoints := filepath.Join(dir, "endpoints.json")
	if err := os.WriteFile(endpoints, fmt.Appendf(nil, `{"peervault": [{"id": "server1", "address": %q, "port": %s}]}`, host, port), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "pvlb.hcl")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "discovery \"file\" \"local\" {\n  path = %q\n}\n\nservice \"peervault\" {\n  discovery = discovery.file.local\n}\n", endpoints), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startFollowing starts pvlb with args and debug logs, and returns it once
// it follows its service's endpoints through the plugin, with the
// plugin's pid and pvlb's standard error still being read.
func startFollowing(t *testing.T, args ...string) (cmd *exec.Cmd, pluginPid int, stderr io.ReadCloser) {
	t.Helper()
	cmd = exec.Command(pvlbBinary, append([]string{"--log-level", "debug"}, args...)...)
	cmd.Env = append(os.Environ(), "PVLB_PLUGIN_PATH="+pluginsDir)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	started := regexp.MustCompile(`following the service's endpoints.*pid=(\d+)`)
	// A pvlb that never logs it is killed, which ends the scan.
	timer := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	lines := bufio.NewScanner(stderr)
	for lines.Scan() {
		if m := started.FindStringSubmatch(lines.Text()); m != nil {
			pluginPid, _ = strconv.Atoi(m[1])
			break
		}
	}
	if pluginPid == 0 {
		t.Fatalf("pvlb never logged that it follows the plugin: %v", lines.Err())
	}
	// Keep reading, so that pvlb is busy calling, not blocked on a full pipe.
	go func() {
		for lines.Scan() {
			if os.Getenv("PVLB_TEST_SHOW_LOG") != "" {
				fmt.Println(time.Now().Format("15:04:05.000"), lines.Text())
			}
		}
	}()
	return cmd, pluginPid, stderr
}

// exitWithin waits for cmd to end and returns its wait status.
func exitWithin(t *testing.T, cmd *exec.Cmd, d time.Duration) syscall.WaitStatus {
	t.Helper()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		_ = cmd.Process.Kill()
		t.Fatalf("pvlb still running %s after the signal", d)
	}
	return cmd.ProcessState.Sys().(syscall.WaitStatus)
}

// ended waits for pid to end (or be a zombie, which only its reaper can
// clear).
func ended(t *testing.T, pid int) {
	t.Helper()
	testtools.WaitFor(t, fmt.Sprintf("plugin %d to end", pid), func() bool { return procstate.Ended(pid) })
}

// SIGINT, SIGTERM and SIGHUP each end a running invoke within a few
// seconds, exit status 128 + the signal, and its plugin with it.
func TestSignalsEndCommandAndPlugins(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd, plugin, _ := longInvoke(t)
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			ws := exitWithin(t, cmd, 2*exitGrace)
			if ws.ExitStatus() != 128+int(sig) {
				t.Errorf("exit status %d, want %d", ws.ExitStatus(), 128+int(sig))
			}
			ended(t, plugin)
		})
	}
}

// A hung plugin does not keep pvlb from ending: after SIGTERM it is killed
// within the stop bound.
func TestSignalEndsAHungPlugin(t *testing.T) {
	cmd, plugin, _ := longInvoke(t)
	if err := syscall.Kill(plugin, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ws := exitWithin(t, cmd, 2*exitGrace)
	t.Logf("pvlb exited %v after SIGTERM, status %d", time.Since(start), ws.ExitStatus())
	ended(t, plugin)
}

// When the reader of pvlb's output goes away (pvlb -v ... | head), pvlb
// stops, and its plugin with it, rather than dying of SIGPIPE first.
func TestClosedOutputEndsCommandAndPlugins(t *testing.T) {
	cmd, plugin, stderr := longInvoke(t, "--verbose")
	_ = stderr.Close() // -v writes a line per call to standard error
	ws := exitWithin(t, cmd, 2*exitGrace)
	if ws.Signaled() {
		t.Errorf("pvlb died of %v", ws.Signal())
	} else if ws.ExitStatus() != 128+int(syscall.SIGPIPE) {
		t.Errorf("exit status %d, want %d", ws.ExitStatus(), 128+int(syscall.SIGPIPE))
	}
	ended(t, plugin)
}

// Killed outright, pvlb cannot stop its plugin: the kernel does.
func TestKilledPvlbLeavesNoPlugin(t *testing.T) {
	cmd, plugin, _ := longInvoke(t)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	ended(t, plugin)
}

// health --force waits on servers that never answer a check; a signal
// ends the checks, the command and its plugin.
func TestSignalEndsHealth(t *testing.T) {
	// A listener that accepts and never speaks: every check waits for its
	// timeout.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	cmd, plugin, _ := startFollowing(t, "health", "-c", pluginConfig(t, l.Addr().String()), "--force")
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	ws := exitWithin(t, cmd, 2*exitGrace)
	if took := time.Since(start); took >= exitGrace {
		t.Errorf("health took %s to stop: the grace period ended it, not the signal", took)
	}
	if ws.ExitStatus() != 128+int(syscall.SIGINT) {
		t.Errorf("exit status %d, want %d", ws.ExitStatus(), 128+int(syscall.SIGINT))
	}
	ended(t, plugin)
}

// A long simulation stops at a signal, well before the grace period that
// would end it regardless.
func TestSignalStopsSimulate(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "pvlb.hcl")
	if err := os.WriteFile(cfg, []byte("discovery \"static\" \"s\" {\n  endpoint \"a\" { address = \"127.0.0.1:1\" }\n}\nservice \"s\" { discovery = discovery.static.s }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(pvlbBinary, "simulate", "-c", cfg, "-n", "100000000", "--rps", "1000000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	// Running, not loading: it has used a quarter second of CPU.
	testtools.WaitFor(t, "simulate to be running", func() bool { return cpuTicks(cmd.Process.Pid) >= 25 })
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ws := exitWithin(t, cmd, 2*exitGrace)
	if took := time.Since(start); took >= exitGrace {
		t.Errorf("simulate took %s to stop: the grace period ended it, not the signal", took)
	}
	if ws.ExitStatus() != 128+int(syscall.SIGTERM) {
		t.Errorf("exit status %d, want %d", ws.ExitStatus(), 128+int(syscall.SIGTERM))
	}
}

// cpuTicks is the user and system CPU time pid has used, in clock ticks.
func cpuTicks(pid int) int {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.Atoi(fields[11])
	stime, _ := strconv.Atoi(fields[12])
	return utime + stime
}
