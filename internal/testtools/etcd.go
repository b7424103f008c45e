package testtools

import (
	"context"
	"net"
	"path/filepath"
	"strconv"
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
	proc       *process
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
	c := e.Client()
	defer c.Close()
	e.proc = startProcess(e.t, "etcd", e.bin, e.dir, args, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := c.Get(ctx, "health-probe")
		return err
	})
}

// Stop stops the server (by PID) and waits for it to exit.
func (e *Etcd) Stop() { e.proc.stop() }

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
