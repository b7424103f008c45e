// A plugin whose Configure never returns.
package main

import (
	"context"

	"github.com/peervault/pvlb/pkg/pluginapi"
)

type hang struct{}

func (hang) Schema() pluginapi.Schema { return pluginapi.Schema{} }
func (hang) Configure(ctx context.Context, _ pluginapi.Settings) error {
	select {} // ignores even its context
}
func (hang) Resolve(context.Context, string) ([]pluginapi.ServiceInstance, error) { return nil, nil }
func (hang) Watch(ctx context.Context, _ string, _ chan<- []pluginapi.ServiceInstance) error {
	<-ctx.Done()
	return nil
}

func main() { pluginapi.Serve(hang{}) }
