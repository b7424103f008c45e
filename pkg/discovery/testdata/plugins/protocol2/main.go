// A plugin that speaks only a future protocol version 2.
package main

import (
	"github.com/hashicorp/go-plugin"

	"github.com/peervault/pvlb/pkg/pluginapi"
)

func main() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  pluginapi.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{2: {pluginapi.PluginName: &pluginapi.GRPCPlugin{}}},
		GRPCServer:       plugin.DefaultGRPCServer,
	})
}
