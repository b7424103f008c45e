package pluginapi_test

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/peervault/pvlb/pkg/pluginapi"
)

// fixedProvider serves a fixed list and a Watch that sends it twice.
type fixedProvider struct {
	mu         sync.Mutex
	configured string
}

func (p *fixedProvider) address() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.configured
}

func (p *fixedProvider) Schema() pluginapi.Schema {
	return pluginapi.Schema{
		Attributes: []pluginapi.Attribute{
			{Name: "address", Type: pluginapi.String, Required: true, Description: "where the registry is"},
			{Name: "token", Type: pluginapi.String, Sensitive: true},
			{Name: "tags", Type: pluginapi.ListOfString},
		},
		Blocks: []pluginapi.Block{{Name: "endpoint", Labels: []string{"name"}, Multiple: true, Schema: pluginapi.Schema{
			Attributes: []pluginapi.Attribute{{Name: "address", Type: pluginapi.String, Required: true}},
		}}},
	}
}

func (p *fixedProvider) Configure(_ context.Context, s pluginapi.Settings) error {
	var cfg struct {
		Address string `json:"address"`
	}
	if err := s.Decode(&cfg); err != nil {
		return err
	}
	if cfg.Address == "" {
		return errors.New("address is empty")
	}
	p.mu.Lock()
	p.configured = cfg.Address
	p.mu.Unlock()
	return nil
}

var instances = []pluginapi.ServiceInstance{
	{ID: "a", Address: "10.0.0.1", Port: 50051, Weight: 2, Health: pluginapi.HealthHealthy, Zone: "z1", Metadata: map[string]string{"k": "v"}},
	{ID: "b", Address: "::1", Port: 50052, Weight: 1, Health: pluginapi.HealthUnhealthy},
}

func (p *fixedProvider) Resolve(_ context.Context, service string) ([]pluginapi.ServiceInstance, error) {
	if service != "peervault" {
		return nil, errors.New("no such service " + service)
	}
	return instances, nil
}

func (p *fixedProvider) Watch(ctx context.Context, service string, updates chan<- []pluginapi.ServiceInstance) error {
	for _, snap := range [][]pluginapi.ServiceInstance{instances[:1], instances} {
		if !pluginapi.Send(ctx, updates, snap) {
			return nil
		}
	}
	<-ctx.Done()
	return nil
}

func dispense(t *testing.T, impl pluginapi.Provider) *pluginapi.Client {
	t.Helper()
	// go-plugin's test server races its own Stop with Serve's start
	// (grpc_server.go), so only the client is closed here.
	client, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{
		pluginapi.PluginName: &pluginapi.GRPCPlugin{Impl: impl},
	})
	t.Cleanup(func() { client.Close() })
	raw, err := client.Dispense(pluginapi.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	return raw.(*pluginapi.Client)
}

func TestRoundTripInProcess(t *testing.T) {
	impl := &fixedProvider{}
	c := dispense(t, impl)
	ctx := context.Background()

	schema, err := c.SchemaErr(ctx)
	if err != nil || !reflect.DeepEqual(schema, impl.Schema()) {
		t.Fatalf("schema %+v, %v", schema, err)
	}
	if err := c.Configure(ctx, pluginapi.NewSettings([]byte(`{"address":"127.0.0.1:8500"}`))); err != nil || impl.address() != "127.0.0.1:8500" {
		t.Fatalf("configure: %v (%q)", err, impl.address())
	}
	if err := c.Configure(ctx, pluginapi.NewSettings([]byte(`{}`))); err == nil || err.Error() != "configure: address is empty" {
		t.Fatalf("configure error = %v", err)
	}
	got, err := c.Resolve(ctx, "peervault")
	if err != nil || !reflect.DeepEqual(got, instances) {
		t.Fatalf("resolve = %+v, %v", got, err)
	}
	if _, err := c.Resolve(ctx, "other"); err == nil || err.Error() != `resolve "other": no such service other` {
		t.Fatalf("resolve error = %v", err)
	}

	wctx, cancel := context.WithCancel(ctx)
	updates := make(chan []pluginapi.ServiceInstance)
	done := make(chan error, 1)
	go func() { done <- c.Watch(wctx, "peervault", updates) }()
	for _, want := range [][]pluginapi.ServiceInstance{instances[:1], instances} {
		select {
		case snap := <-updates:
			if !reflect.DeepEqual(snap, want) {
				t.Fatalf("watch sent %+v, want %+v", snap, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no watch update")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("watch ended with %v after cancel", err)
	}
}

func TestHostPort(t *testing.T) {
	if hp := instances[1].HostPort(); hp != "[::1]:50052" {
		t.Fatal(hp)
	}
	if hp := instances[0].HostPort(); hp != "10.0.0.1:50051" {
		t.Fatal(hp)
	}
}
