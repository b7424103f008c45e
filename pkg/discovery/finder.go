// Package discovery is pvlb's side of discovery plugins: it finds plugin
// executables, starts them over go-plugin with mutual TLS and optional
// checksum pinning, decodes discovery blocks with the plugins' schemas, and
// keeps a LoadBalancer's endpoints in step with a plugin's Watch stream,
// restarting plugins that crash.
package discovery

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/peervault/pvlb/pkg/pluginapi"
)

// PluginPathEnv lists extra plugin directories, separated like PATH.
const PluginPathEnv = "PVLB_PLUGIN_PATH"

// Plugin is a discovery provider that can be started.
type Plugin struct {
	Kind string `json:"kind"`
	// Path is the executable; for a bundled provider, pvlb itself.
	Path string `json:"path"`
	// Args start the plugin; a bundled provider runs pvlb with a hidden
	// sub-command.
	Args    []string `json:"-"`
	Bundled bool     `json:"bundled"`
	// Overrides is set on an external plugin whose kind pvlb also
	// bundles: the external one wins.
	Overrides bool `json:"overrides_bundled,omitempty"`
}

// Finder locates plugins: external executables named pvlb-discovery-KIND
// in Dirs, in order, and else the providers bundled into pvlb.
type Finder struct {
	Dirs []string
	// Bundled maps the kinds pvlb provides itself to the arguments that
	// start pvlb (Self) as that plugin.
	Bundled map[string][]string
	Self    string
}

// SearchPath is where plugins are looked for, in order: the configuration's
// plugin_dir, $PVLB_PLUGIN_PATH, the folder of the pvlb executable, and
// ~/.pvlb/plugins.
func SearchPath(pluginDir string) []string {
	var dirs []string
	if pluginDir != "" {
		dirs = append(dirs, pluginDir)
	}
	for _, d := range filepath.SplitList(os.Getenv(PluginPathEnv)) {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	if exe, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Dir(exe))
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, ".pvlb", "plugins"))
	}
	return slices.Compact(dirs)
}

// Find returns the plugin for kind, or an error that lists where it looked.
func (f *Finder) Find(kind string) (*Plugin, error) {
	for _, dir := range f.Dirs {
		path := filepath.Join(dir, pluginapi.ExecutablePrefix+kind)
		if isExecutable(path) {
			_, bundled := f.Bundled[kind]
			return &Plugin{Kind: kind, Path: path, Overrides: bundled}, nil
		}
	}
	if args, ok := f.Bundled[kind]; ok {
		return &Plugin{Kind: kind, Path: f.Self, Args: args, Bundled: true}, nil
	}
	return nil, &NotFoundError{Kind: kind, Dirs: f.Dirs}
}

// NotFoundError says which plugin was missing and where pvlb looked.
type NotFoundError struct {
	Kind string
	Dirs []string
}

func (e *NotFoundError) Error() string {
	where := "no plugin directories"
	if len(e.Dirs) > 0 {
		where = strings.Join(e.Dirs, ", ")
	}
	return fmt.Sprintf("no plugin for discovery kind %q: looked for an executable %s%s in %s (set plugin_dir or $%s to add a directory)",
		e.Kind, pluginapi.ExecutablePrefix, e.Kind, where, PluginPathEnv)
}

// List returns every plugin that Find could return, one per kind: external
// ones first in search order, then bundled kinds that no external plugin
// overrides.
func (f *Finder) List() []*Plugin {
	var out []*Plugin
	seen := map[string]bool{}
	for _, dir := range f.Dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			kind, ok := strings.CutPrefix(e.Name(), pluginapi.ExecutablePrefix)
			if !ok || kind == "" || seen[kind] || !isExecutable(filepath.Join(dir, e.Name())) {
				continue
			}
			seen[kind] = true
			_, bundled := f.Bundled[kind]
			out = append(out, &Plugin{Kind: kind, Path: filepath.Join(dir, e.Name()), Overrides: bundled})
		}
	}
	for kind, args := range f.Bundled {
		if !seen[kind] {
			out = append(out, &Plugin{Kind: kind, Path: f.Self, Args: args, Bundled: true})
		}
	}
	slices.SortFunc(out, func(a, b *Plugin) int { return strings.Compare(a.Kind, b.Kind) })
	return out
}

func isExecutable(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.Mode().IsRegular() && info.Mode().Perm()&0o111 != 0
}

// Checksum returns the SHA-256 of the plugin's executable, as hex.
func (p *Plugin) Checksum() (string, error) {
	f, err := os.Open(p.Path)
	if err != nil {
		return "", fmt.Errorf("checksum of %s: %w", p.Path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("checksum of %s: %w", p.Path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
