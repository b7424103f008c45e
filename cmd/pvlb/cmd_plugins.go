package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/peervault/pvlb/pkg/config"
	"github.com/peervault/pvlb/pkg/discovery"
	"github.com/peervault/pvlb/pkg/pluginapi"
	"github.com/peervault/pvlb/plugins/consul"
	"github.com/peervault/pvlb/plugins/dns"
	"github.com/peervault/pvlb/plugins/etcd"
	"github.com/peervault/pvlb/plugins/kubernetes"
)

// bundled are the discovery providers linked into pvlb. pvlb still runs
// each out of process, as itself with the hidden internal-plugin command.
var bundled = map[string]func() pluginapi.Provider{
	"dns":        func() pluginapi.Provider { return &dns.Provider{} },
	"etcd":       func() pluginapi.Provider { return &etcd.Provider{} },
	"consul":     func() pluginapi.Provider { return &consul.Provider{} },
	"kubernetes": func() pluginapi.Provider { return &kubernetes.Provider{} },
}

// InternalPluginCmd serves a bundled provider over the plugin protocol.
type InternalPluginCmd struct {
	Kind string `arg:"" help:"Bundled discovery kind to serve."`
}

// Run serves until pvlb, the plugin's host, stops it.
func (c *InternalPluginCmd) Run(a *app) error {
	newProvider, ok := bundled[c.Kind]
	if !ok {
		return userErrorf("no bundled discovery provider %q", c.Kind)
	}
	pluginapi.Serve(newProvider())
	return nil
}

// host returns the plugin host for cfg, made on first use and closed when
// the command ends.
func (a *app) pluginHost(cfg *config.Config) *discovery.Host {
	if a.host == nil {
		args := map[string][]string{}
		for kind := range bundled {
			args[kind] = []string{"internal-plugin", kind}
		}
		a.host = discovery.NewHost(&discovery.Finder{
			Dirs:    discovery.SearchPath(cfg.PluginDir),
			Bundled: args,
			Self:    selfPath(),
		}, a.log)
	}
	return a.host
}

// selfPath is how to run this pvlb again: the command it was started as,
// found on PATH like a shell would, or else its executable.
func selfPath() string {
	if p, err := exec.LookPath(os.Args[0]); err == nil {
		return p
	}
	if p, err := os.Executable(); err == nil {
		return p
	}
	return os.Args[0]
}

// PluginsCmd lists the discovery providers.
type PluginsCmd struct {
	Output string `short:"o" default:"text" enum:"text,json" help:"Output format: ${enum}."`
}

// Help is shown by pvlb plugins --help.
func (c *PluginsCmd) Help() string {
	return `Lists the discovery providers pvlb can use: bundled ones (run as pvlb
itself, out of process) and plugin executables named pvlb-discovery-KIND on
the plugin path, which is, in order: plugin_dir from the configuration,
$PVLB_PLUGIN_PATH, the folder of the pvlb executable, ~/.pvlb/plugins.
An executable of a bundled kind overrides the bundled provider.

Each provider is started once to check its handshake and protocol version.
The SHA256 is what a plugin "KIND" { sha256 = "..." } block pins.

Exit status: 0 when every provider starts, 1 when one does not.`
}

type pluginRow struct {
	*discovery.Plugin
	Protocol int    `json:"protocol_version,omitempty"`
	SHA256   string `json:"sha256"`
	Error    string `json:"error,omitempty"`
}

// Run lists.
func (c *PluginsCmd) Run(a *app) error {
	// The configuration matters only for its plugin_dir; without one
	// (the default "." holding no .hcl files) the default path is listed.
	cfg := &config.Config{}
	loader := config.NewLoader()
	if loaded, diags := loader.LoadPaths(a.globals.Config); !diags.HasErrors() {
		cfg = loaded
	} else if !slices.Equal(a.globals.Config, []string{"."}) {
		a.renderDiagnostics(loader.Files(), diags)
		return errReported
	}
	host := a.pluginHost(cfg)
	// Every provider is started at once, each for at most probeTimeout,
	// so that one that hangs does not hold up the list.
	found := host.Finder().List()
	rows := make([]pluginRow, len(found))
	var wg sync.WaitGroup
	for i, p := range found {
		rows[i] = pluginRow{Plugin: p}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if sum, err := p.Checksum(); err == nil {
				rows[i].SHA256 = sum
			}
			ctx, cancel := context.WithTimeout(a.ctx, probeTimeout)
			r, err := host.Start(ctx, p, "")
			cancel()
			if err != nil {
				rows[i].Error = err.Error()
				return
			}
			rows[i].Protocol = r.Version
			r.Kill()
		}()
	}
	wg.Wait()
	if c.Output == "json" {
		if err := writeJSON(a.stdout, map[string]any{"plugins": rows, "search_path": host.Finder().Dirs}); err != nil {
			return err
		}
	} else {
		writePlugins(a.stdout, rows, host.Finder().Dirs)
	}
	// A provider that does not start fails the listing, as a check should.
	if slices.ContainsFunc(rows, func(r pluginRow) bool { return r.Error != "" }) {
		return errReported
	}
	return nil
}

// probeTimeout bounds starting a provider to list it: a healthy one
// completes its handshake in milliseconds.
const probeTimeout = 3 * time.Second

func writePlugins(w io.Writer, rows []pluginRow, dirs []string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tSOURCE\tPROTOCOL\tPATH\tSHA256")
	for _, r := range rows {
		source := "external"
		switch {
		case r.Bundled:
			source = "bundled"
		case r.Overrides:
			source = "external (overrides bundled)"
		}
		protocol := strconv.Itoa(r.Protocol)
		if r.Error != "" {
			protocol = "error: " + r.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Kind, source, protocol, r.Path, r.SHA256)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\nSearch path: %s\n", joinNames(dirs))
}
