// Command buildtools builds the real servers the tests use (etcd, Consul)
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
	for _, t := range []struct{ tool, pkg, version string }{
		{"etcd", "etcd", testtools.EtcdVersion},
		{"consul", "consul", testtools.ConsulVersion},
	} {
		start := time.Now()
		path, err := testtools.Binary(t.tool, t.pkg, t.version)
		if err != nil {
			fmt.Fprintf(os.Stderr, "buildtools: %v\n", err)
			os.Exit(1)
		}
		fmt.Printf("%s %s: %s (%s)\n", t.tool, t.version, path, time.Since(start).Round(time.Second))
	}
}
