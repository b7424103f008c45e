package pluginapi

import (
	"fmt"
	"os"
	"time"

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
	if cfg.Test == nil {
		go exitWithParent(os.Getppid(), time.Second)
	}
	plugin.Serve(cfg)
}

// exitWithParent ends the plugin when the process that started it is gone
// (its parent changes: the orphan is adopted), however that process ended,
// so that a plugin never outlives pvlb or the program using its library.
// go-plugin's Serve ignores SIGINT, and the host may have had no chance to
// stop it (SIGKILL, or a program that returned without Close).
func exitWithParent(parent int, every time.Duration) {
	if parent <= 1 {
		return // started by init or a subreaper: nothing to watch
	}
	for range time.Tick(every) {
		if os.Getppid() != parent {
			fmt.Fprintln(os.Stderr, "pvlb discovery plugin: the process that started it is gone; exiting")
			os.Exit(1)
		}
	}
}
