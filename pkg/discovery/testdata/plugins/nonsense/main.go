// A plugin whose Watch streams nonsense (a port of 0, a duplicated id)
// between good snapshots.
package main

import (
	"context"

	"github.com/peervault/pvlb/pkg/pluginapi"
)

type nonsense struct{}

var good = []pluginapi.ServiceInstance{{ID: "a", Address: "127.0.0.1", Port: 50051}}

func (nonsense) Schema() pluginapi.Schema                            { return pluginapi.Schema{} }
func (nonsense) Configure(context.Context, pluginapi.Settings) error { return nil }
func (nonsense) Resolve(context.Context, string) ([]pluginapi.ServiceInstance, error) {
	return good, nil
}

func (nonsense) Watch(ctx context.Context, _ string, updates chan<- []pluginapi.ServiceInstance) error {
	for _, snap := range [][]pluginapi.ServiceInstance{
		{{ID: "a", Address: "127.0.0.1", Port: 0}},
		{{ID: "a", Address: "h", Port: 1}, {ID: "a", Address: "h", Port: 2}},
		{{ID: "b", Address: "127.0.0.1", Port: 50052}},
	} {
		if !pluginapi.Send(ctx, updates, snap) {
			return nil
		}
	}
	<-ctx.Done()
	return nil
}

func main() { pluginapi.Serve(nonsense{}) }
