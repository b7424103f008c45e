// Command buildtools builds the real servers the tests use (etcd, Consul,
// kube-apiserver, CoreDNS)
// into the tools folder when they are missing, before `go test` runs, so a
// cold build does not count against a test's timeout.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/peervault/pvlb/internal/testtools"
)

func main() {
	for _, t := range []struct {
		tool, version string
		build         func() (string, error)
	}{
		{"etcd", testtools.EtcdVersion, func() (string, error) { return testtools.Binary("etcd", "etcd", testtools.EtcdVersion) }},
		{"consul", testtools.ConsulVersion, func() (string, error) { return testtools.Binary("consul", "consul", testtools.ConsulVersion) }},
		{"kube-apiserver", testtools.KubeVersion, testtools.KubeAPIServer},
		{"coredns", testtools.CoreDNSVersion, func() (string, error) { return testtools.Binary("coredns", "coredns", testtools.CoreDNSVersion) }},
	} {
		start := time.Now()
		path, err := t.build()
		if err != nil {
			fmt.Fprintf(os.Stderr, "buildtools: %v\n", err)
			os.Exit(1)
		}
		fmt.Printf("%s %s: %s (%s)\n", t.tool, t.version, path, time.Since(start).Round(time.Second))
	}
}
