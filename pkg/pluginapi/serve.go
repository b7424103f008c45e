package pluginapi

import (
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
)

// ServeOption adjusts Serve.
type ServeOption func(*plugin.ServeConfig)

// WithLogger sets the logger go-plugin uses inside the plugin; what it
// writes to stderr appears in pvlb's log under the plugin's name.
func WithLogger(l hclog.Logger) ServeOption {
	return func(c *plugin.ServeConfig) { c.Logger = l }
}

// WithTestConfig serves in process for tests (see plugin.ServeTestConfig).
func WithTestConfig(t *plugin.ServeTestConfig) ServeOption {
	return func(c *plugin.ServeConfig) { c.Test = t }
}

// Serve runs provider as a plugin until pvlb stops it. It is the whole of
// a plugin's main function. Run by hand, outside pvlb, it explains itself
// and exits.
func Serve(provider Provider, opts ...ServeOption) {
	cfg := &plugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: PluginSet(provider),
		GRPCServer:       plugin.DefaultGRPCServer,
		Logger: hclog.New(&hclog.LoggerOptions{
			Output:     os.Stderr,
			Level:      hclog.Info,
			JSONFormat: true, // go-plugin relays JSON log lines to pvlb structured
		}),
	}
	for _, opt := range opts {
		opt(cfg)
	}
	plugin.Serve(cfg)
}
