package rpc_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/peervault/pvlb/pkg/demoserver"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/rpc"
	pb "github.com/peervault/pvlb/proto/peervault/v1"
)

// Generated stubs work through a LoadBalancedClient; a HealthChecker
// sharing its connections keeps unhealthy servers out.
func ExampleLoadBalancedClient() {
	cfg := lb.DefaultLoadBalancerConfig()
	cfg.Service = "peervault"
	balancer, _ := lb.NewLoadBalancer(cfg, nil)
	for i := range 3 {
		s, _ := demoserver.Start("127.0.0.1:0", demoserver.Config{Name: fmt.Sprintf("server%d", i+1)}, nil)
		defer s.Stop()
		host, port, _ := net.SplitHostPort(s.Addr())
		portNum, _ := strconv.Atoi(port)
		_ = balancer.AddServer(s.Name(), host, portNum, 1)
	}

	pool, _ := rpc.NewConnPool(balancer, nil, nil)
	defer pool.Close()
	health := rpc.NewHealthChecker(time.Second, 500*time.Millisecond, nil, rpc.WithHealthService(demoserver.ServiceName))
	_ = health.Start(balancer, pool)
	defer health.Close()
	health.ForceHealthCheckAll(context.Background())

	client, _ := rpc.NewLoadBalancedClient(balancer, nil, nil, rpc.WithConnPool(pool))
	defer client.Close()
	stub := pb.NewPeerVaultServiceClient(client)

	served := map[string]int{}
	for range 300 {
		resp, err := stub.GetUserData(context.Background(), &pb.GetUserDataRequest{UserId: "u1"})
		if err != nil {
			panic(err)
		}
		served[resp.GetServer()]++
	}
	fmt.Println(served["server1"], served["server2"], served["server3"])
	fmt.Println(health.GetHealthStats().HealthyServers, "healthy")
	// Output:
	// 100 100 100
	// 3 healthy
}
