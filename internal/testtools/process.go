package testtools

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// process is a server binary run for a test, its output in a log file.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// startProcess runs bin with args, logging to dir/<name>.log, then polls
// ready until it succeeds, the process exits, or within passes.
func startProcess(t TB, name, bin, dir string, args []string, within time.Duration, ready func() error) *process {
	t.Helper()
	p := &process{name: name, cmd: exec.Command(bin, args...), log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatalf("%v", err)
	}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); logf.Close(); close(p.done) }()
	deadline := time.Now().Add(within)
	for {
		err := ready()
		if err == nil {
			return p
		}
		select {
		case <-p.done:
			out, _ := os.ReadFile(p.log)
			t.Fatalf("%s exited at start:\n%s", name, out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was not ready within %s: %v", name, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the process (SIGTERM, then SIGKILL after 10s) and waits for it.
func (p *process) stop() {
	if p == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}
