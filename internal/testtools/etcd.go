package testtools

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// EtcdVersion is the etcd server built for tests: the version of the
// client pvlb uses.
const EtcdVersion = "v3.7.3"

// Etcd is a real etcd server on loopback, with its own data folder.
type Etcd struct {
	t          TB
	bin        string
	dir        string
	ClientPort int
	peerPort   int
	cmd        *exec.Cmd
	done       chan struct{}
	extraArgs  []string
}

// StartEtcd starts etcd on free loopback ports and stops it when the test
// ends. args are added to its command line.
func StartEtcd(t TB, args ...string) *Etcd {
	t.Helper()
	e := &Etcd{
		t:          t,
		bin:        Require(t, "etcd", "etcd", EtcdVersion),
		dir:        t.TempDir(),
		ClientPort: freePort(t),
		peerPort:   freePort(t),
		extraArgs:  args,
	}
	e.Start()
	t.Cleanup(e.Stop)
	return e
}

// Endpoint is the client address, host:port.
func (e *Etcd) Endpoint() string { return "127.0.0.1:" + strconv.Itoa(e.ClientPort) }

// Start starts (or restarts, keeping its data) the server and waits until
// it answers.
func (e *Etcd) Start() {
	e.t.Helper()
	peer := "http://127.0.0.1:" + strconv.Itoa(e.peerPort)
	client := "http://" + e.Endpoint()
	args := append([]string{
		"--name", "pvlb-test",
		"--data-dir", filepath.Join(e.dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "pvlb-test=" + peer,
		"--log-level", "error",
	}, e.extraArgs...)
	e.cmd = exec.Command(e.bin, args...)
	logf, err := os.Create(filepath.Join(e.dir, "etcd.log"))
	if err != nil {
		e.t.Fatalf("%v", err)
	}
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	if err := e.cmd.Start(); err != nil {
		e.t.Fatalf("start etcd: %v", err)
	}
	e.done = make(chan struct{})
	go func() { _ = e.cmd.Wait(); logf.Close(); close(e.done) }()
	c := e.Client()
	defer c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.Get(ctx, "health-probe")
		cancel()
		if err == nil {
			return
		}
		select {
		case <-e.done:
			log, _ := os.ReadFile(filepath.Join(e.dir, "etcd.log"))
			e.t.Fatalf("etcd exited at start:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("etcd did not answer within 20s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops the server (by PID) and waits for it to exit.
func (e *Etcd) Stop() {
	if e.cmd == nil || e.cmd.Process == nil {
		return
	}
	select {
	case <-e.done:
		return
	default:
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(10 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.done
	}
}

// Client returns a client for the server; the caller closes it.
func (e *Etcd) Client() *clientv3.Client {
	e.t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Endpoint()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		e.t.Fatalf("%v", err)
	}
	return c
}

func freePort(t TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
