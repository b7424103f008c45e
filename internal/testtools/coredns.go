package testtools

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// CoreDNSVersion is the CoreDNS built for tests (testenv/coredns).
const CoreDNSVersion = "v1.15.0"

// Zone is the DNS zone a CoreDNS serves to tests.
const Zone = "example.test."

// CoreDNS is a real CoreDNS on loopback serving Zone from a file the test
// rewrites (SetRecords); CoreDNS reloads it within 100ms of a change.
type CoreDNS struct {
	t    TB
	bin  string
	dir  string
	Port int
	proc *process

	mu     sync.Mutex
	serial int
}

// StartCoreDNS starts CoreDNS on a free loopback port, serving Zone with
// records (zone file lines relative to Zone, like "peervault 1 IN A
// 127.0.0.1"), and stops it when the test ends.
func StartCoreDNS(t TB, records ...string) *CoreDNS {
	t.Helper()
	c := &CoreDNS{t: t, bin: Require(t, "coredns", "coredns", CoreDNSVersion), dir: t.TempDir(), Port: freePort(t)}
	c.SetRecords(records...)
	corefile := fmt.Sprintf("%s:%d {\n  bind 127.0.0.1\n  errors\n  file %s {\n    reload 100ms\n  }\n}\n", Zone, c.Port, filepath.Join(c.dir, "zone.db"))
	if err := os.WriteFile(filepath.Join(c.dir, "Corefile"), []byte(corefile), 0o600); err != nil {
		t.Fatalf("%v", err)
	}
	c.Start()
	t.Cleanup(c.Stop)
	return c
}

// Addr is the server's address, host:port.
func (c *CoreDNS) Addr() string { return "127.0.0.1:" + strconv.Itoa(c.Port) }

// Start starts (or restarts) the server and waits until it answers.
func (c *CoreDNS) Start() {
	c.t.Helper()
	c.proc = startProcess(c.t, "coredns", c.bin, c.dir, []string{"-conf", filepath.Join(c.dir, "Corefile")}, 20*time.Second, func() error {
		m := new(dns.Msg)
		m.SetQuestion(Zone, dns.TypeSOA)
		_, _, err := (&dns.Client{Timeout: 200 * time.Millisecond}).Exchange(m, c.Addr())
		return err
	})
}

// Stop stops the server and waits for it to exit: a DNS outage.
func (c *CoreDNS) Stop() { c.proc.stop() }

// Serial is the zone's SOA serial now.
func (c *CoreDNS) Serial() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.serial
}

// SetRecords replaces the zone's records, with a new SOA serial, written
// whole and renamed over the zone file.
func (c *CoreDNS) SetRecords(records ...string) {
	c.t.Helper()
	c.mu.Lock()
	c.serial++
	serial := c.serial
	c.mu.Unlock()
	zone := fmt.Sprintf("$ORIGIN %s\n$TTL 1\n@ IN SOA ns.%s admin.%s %d 7200 3600 1209600 1\n@ IN NS ns\nns IN A 127.0.0.1\n%s\n",
		Zone, Zone, Zone, serial, strings.Join(records, "\n"))
	path := filepath.Join(c.dir, "zone.db")
	if err := os.WriteFile(path+".tmp", []byte(zone), 0o600); err != nil {
		c.t.Fatalf("%v", err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		c.t.Fatalf("%v", err)
	}
}
