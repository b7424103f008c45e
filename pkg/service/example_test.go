package service_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/peervault/pvlb/pkg/config"
	"github.com/peervault/pvlb/pkg/service"
)

const exampleConfig = `discovery "static" "local" {
  endpoint "server1" { address = "127.0.0.1:50051" }
}
strategy "chosen" {
  kind = %q
}
service "peervault" {
  discovery = discovery.static.local
  strategy  = strategy.chosen
}
`

// A service that follows its configuration file, as docs/grpc.md shows:
// each time the file changes it is loaded again and, when it has no
// errors, handed to the running service, which changes in place.
func Example_reload() {
	ctx := context.Background()
	path := filepath.Join(os.TempDir(), fmt.Sprintf("pvlb-example-%d.hcl", os.Getpid()))
	defer os.Remove(path)
	if err := os.WriteFile(path, fmt.Appendf(nil, exampleConfig, "round_robin"), 0o600); err != nil {
		panic(err)
	}

	cfg, diags := config.Load(path)
	if diags.HasErrors() {
		panic(diags)
	}
	svcCfg, _ := cfg.Service("peervault")
	svc, err := service.New(ctx, svcCfg, service.Options{Config: cfg})
	if err != nil {
		panic(err)
	}
	defer svc.Close()
	fmt.Println(svc.Balancer.GetServerStats().Strategy)

	reloaded := make(chan struct{}, 1)
	stop, err := config.WatchFiles(ctx, []string{path}, func() {
		next, diags := config.Load(path)
		if diags.HasErrors() {
			slog.Warn("configuration refused; the running one stays", "error", diags.Error())
			return
		}
		svcCfg, _ := next.Service("peervault")
		if err := svc.Reload(ctx, svcCfg, service.Options{Config: next}); err != nil {
			slog.Warn("configuration not applied", "error", err)
			return
		}
		select {
		case reloaded <- struct{}{}:
		default:
		}
	})
	if err != nil {
		panic(err)
	}
	defer stop()

	if err := os.WriteFile(path, fmt.Appendf(nil, exampleConfig, "least_connections"), 0o600); err != nil {
		panic(err)
	}
	<-reloaded
	fmt.Println(svc.Balancer.GetServerStats().Strategy)
	// Output:
	// round_robin
	// least_connections
}
