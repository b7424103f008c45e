package pluginapi_test

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/peervault/pvlb/pkg/pluginapi"
)

// single is a whole discovery provider: one server, from one setting.
// Its plugin's main function would be pluginapi.Serve(&single{}).
type single struct{ instance pluginapi.ServiceInstance }

func (s *single) Schema() pluginapi.Schema {
	return pluginapi.Schema{Attributes: []pluginapi.Attribute{
		{Name: "address", Type: pluginapi.String, Required: true, Description: "host:port of the one server"},
	}}
}

func (s *single) Configure(_ context.Context, settings pluginapi.Settings) error {
	var cfg struct {
		Address string `json:"address"`
	}
	if err := settings.Decode(&cfg); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(cfg.Address)
	if err != nil {
		return fmt.Errorf("address %q: %w", cfg.Address, err)
	}
	p, _ := strconv.Atoi(port)
	s.instance = pluginapi.ServiceInstance{ID: "only", Address: host, Port: p, Weight: 1}
	return nil
}

func (s *single) Resolve(context.Context, string) ([]pluginapi.ServiceInstance, error) {
	return []pluginapi.ServiceInstance{s.instance}, nil
}

func (s *single) Watch(ctx context.Context, service string, updates chan<- []pluginapi.ServiceInstance) error {
	instances, _ := s.Resolve(ctx, service)
	if pluginapi.Send(ctx, updates, instances) {
		<-ctx.Done()
	}
	return nil
}

// A provider is plain Go; pvlb calls these methods over gRPC.
func Example() {
	p := &single{}
	if err := p.Configure(context.Background(), pluginapi.NewSettings([]byte(`{"address":"10.0.0.1:50051"}`))); err != nil {
		panic(err)
	}
	instances, _ := p.Resolve(context.Background(), "peervault")
	fmt.Println(instances[0].ID, instances[0].HostPort())
	// Output: only 10.0.0.1:50051
}
