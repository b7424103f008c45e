package testtools

import (
	"errors"
	"strconv"
	"time"

	"github.com/hashicorp/consul/api"
)

// ConsulVersion is the Consul agent built for tests: v1.16.3, the last
// release under MPL-2.0.
const ConsulVersion = "v1.16.3"

// Consul is a real Consul agent in -dev mode on loopback.
type Consul struct {
	t        TB
	bin      string
	dir      string
	HTTPPort int
	ports    []int
	args     []string
	proc     *process
}

// StartConsul starts `consul agent -dev` on free loopback ports and stops
// it when the test ends. args are added to its command line.
func StartConsul(t TB, args ...string) *Consul {
	t.Helper()
	c := &Consul{t: t, bin: Require(t, "consul", "consul", ConsulVersion), dir: t.TempDir(), HTTPPort: freePort(t), args: args}
	c.ports = []int{freePort(t), freePort(t), freePort(t)}
	c.Start()
	t.Cleanup(c.Stop)
	return c
}

// Address is the agent's HTTP address, host:port.
func (c *Consul) Address() string { return "127.0.0.1:" + strconv.Itoa(c.HTTPPort) }

// Start starts (or restarts) the agent and waits until it has a leader.
func (c *Consul) Start() {
	c.t.Helper()
	args := append([]string{"agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", strconv.Itoa(c.HTTPPort),
		"-server-port", strconv.Itoa(c.ports[0]),
		"-serf-lan-port", strconv.Itoa(c.ports[1]),
		"-serf-wan-port", strconv.Itoa(c.ports[2]),
		"-grpc-port", "-1", "-grpc-tls-port", "-1", "-dns-port", "-1",
		"-log-level", "error",
	}, c.args...)
	client := c.Client("")
	c.proc = startProcess(c.t, "consul", c.bin, c.dir, args, 30*time.Second, func() error {
		leader, err := client.Status().Leader()
		if err == nil && leader == "" {
			err = errors.New("no leader yet")
		}
		return err
	})
}

// Stop stops the agent and waits for it to exit.
func (c *Consul) Stop() { c.proc.stop() }

// Client returns an API client for the agent with the given ACL token.
func (c *Consul) Client(token string) *api.Client {
	c.t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = c.Address()
	cfg.Token = token
	client, err := api.NewClient(cfg)
	if err != nil {
		c.t.Fatalf("%v", err)
	}
	return client
}
