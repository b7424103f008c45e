package testtools

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/peervault/pvlb/pkg/demoserver"
	"github.com/peervault/pvlb/pkg/lb"
	pb "github.com/peervault/pvlb/proto/peervault/v1"
)

// DemoServers runs n demo servers, named server1…serverN, on 127.0.0.1
// with port 0; they stop when the test ends.
func DemoServers(t TB, n int, cfg ...demoserver.Config) []*demoserver.Server {
	t.Helper()
	servers := make([]*demoserver.Server, n)
	for i := range servers {
		c := demoserver.Config{}
		if i < len(cfg) {
			c = cfg[i]
		}
		c.Name = fmt.Sprintf("server%d", i+1)
		s, err := demoserver.Start("127.0.0.1:0", c, nil)
		if err != nil {
			t.Fatalf("demo server: %v", err)
		}
		t.Cleanup(s.Stop)
		servers[i] = s
	}
	return servers
}

// HostPort splits a listening address into host and port.
func HostPort(addr string) (string, int) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		panic(fmt.Sprintf("address %q: %v", addr, err))
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		panic(fmt.Sprintf("address %q: %v", addr, err))
	}
	return host, port
}

// AddServers adds each server to balancer under its name, with the given
// weights (1 each when weights is empty).
func AddServers(t TB, balancer *lb.LoadBalancer, servers []*demoserver.Server, weights ...int) {
	t.Helper()
	for i, s := range servers {
		host, port := HostPort(s.Addr())
		w := 1
		if len(weights) > 0 {
			w = weights[i]
		}
		if err := balancer.AddServer(s.Name(), host, port, w); err != nil {
			t.Fatalf("add %s: %v", s.Name(), err)
		}
	}
}

// ServedBy makes n GetUserData calls and counts the answering servers.
func ServedBy(t TB, ctx context.Context, stub pb.PeerVaultServiceClient, n int) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for i := range n {
		resp, err := stub.GetUserData(ctx, &pb.GetUserDataRequest{UserId: fmt.Sprint("u", i)})
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		counts[resp.GetServer()]++
	}
	return counts
}

// WaitFor polls cond until it holds, or fails the test after 10 seconds.
func WaitFor(t TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// DiscoveryBlock returns the HCL of a discovery block named "local" that
// finds servers: a static list or, with endpointsFile, the example file
// plugin reading that file, which it writes (whole, renamed into place,
// as the plugin expects of a writer). A service refers to it as
// discovery.static.local or discovery.file.local (kind tells which).
func DiscoveryBlock(t TB, servers []*demoserver.Server, endpointsFile string) (block, kind string) {
	t.Helper()
	var b strings.Builder
	if endpointsFile == "" {
		b.WriteString("discovery \"static\" \"local\" {\n")
		for _, s := range servers {
			fmt.Fprintf(&b, "  endpoint %q { address = %q }\n", s.Name(), s.Addr())
		}
		b.WriteString("}\n")
		return b.String(), "static"
	}
	var list []string
	for _, s := range servers {
		host, port := HostPort(s.Addr())
		list = append(list, fmt.Sprintf(`{"id": %q, "address": %q, "port": %d}`, s.Name(), host, port))
	}
	tmp := endpointsFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(`{"peervault": [`+strings.Join(list, ", ")+`]}`), 0o600); err != nil {
		t.Fatalf("%v", err)
	}
	if err := os.Rename(tmp, endpointsFile); err != nil {
		t.Fatalf("%v", err)
	}
	return fmt.Sprintf("discovery \"file\" \"local\" {\n  path = %q\n}\n", endpointsFile), "file"
}
