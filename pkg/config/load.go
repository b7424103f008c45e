package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
)

// Loader parses configuration files with one parser, so that every
// diagnostic can later be rendered with the source line it points at.
type Loader struct {
	parser *hclparse.Parser
	// rejected are files refused before parsing (too large, not text,
	// nested too deep), kept to show their lines in diagnostics.
	rejected map[string]*hcl.File
}

// NewLoader returns a Loader with no files loaded.
func NewLoader() *Loader { return &Loader{parser: hclparse.NewParser()} }

// Files returns every file parsed so far, by name, for rendering diagnostics.
func (l *Loader) Files() map[string]*hcl.File {
	files := l.parser.Files()
	for name, f := range l.rejected {
		if _, ok := files[name]; !ok {
			files[name] = f
		}
	}
	return files
}

// Extension is the file name suffix of configuration files in a directory.
const Extension = ".hcl"

// LoadPath loads a file, or every *.hcl file of a directory in name order.
// The configuration is nil only when a file could not be read or parsed.
func (l *Loader) LoadPath(path string) (*Config, hcl.Diagnostics) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read configuration",
			Detail:   describeFSError(path, err),
		}}
	}
	paths := []string{path}
	if info.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read configuration directory", Detail: describeFSError(path, err)}}
		}
		paths = paths[:0]
		for _, e := range entries {
			if !e.IsDir() && strings.HasSuffix(e.Name(), Extension) {
				paths = append(paths, filepath.Join(path, e.Name()))
			}
		}
		if len(paths) == 0 {
			return nil, hcl.Diagnostics{{
				Severity: hcl.DiagError,
				Summary:  "No configuration files",
				Detail:   fmt.Sprintf("The directory %s holds no %s files. Pass a file with -c, or a directory that holds the configuration.", path, Extension),
			}}
		}
	}
	sources := make(map[string][]byte, len(paths))
	var diags hcl.Diagnostics
	for _, p := range paths {
		src, err := os.ReadFile(p)
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot read configuration file", Detail: describeFSError(p, err)})
			continue
		}
		sources[p] = src
	}
	if diags.HasErrors() {
		return nil, diags
	}
	return l.LoadSources(sources)
}

// LoadSources parses and decodes configuration given as file name to
// contents, decoding files in name order.
func (l *Loader) LoadSources(sources map[string][]byte) (*Config, hcl.Diagnostics) {
	names := make([]string, 0, len(sources))
	for name := range sources {
		names = append(names, name)
	}
	slices.Sort(names)
	var diags hcl.Diagnostics
	var bodies []hcl.Body
	for _, name := range names {
		if d := checkShape(name, sources[name]); d.HasErrors() {
			diags = append(diags, d...)
			if l.rejected == nil {
				l.rejected = map[string]*hcl.File{}
			}
			if len(sources[name]) <= MaxFileSize {
				l.rejected[name] = &hcl.File{Bytes: sources[name]}
			}
			continue
		}
		f, d := l.parser.ParseHCL(sources[name], name)
		diags = append(diags, d...)
		if f != nil && !d.HasErrors() {
			bodies = append(bodies, f.Body)
		}
	}
	if diags.HasErrors() {
		return nil, diags
	}
	cfg, d := decode(bodies)
	return cfg, RedactDiagnostics(append(diags, d...))
}

// Load is a shortcut for NewLoader().LoadPath(path).
func Load(path string) (*Config, hcl.Diagnostics) { return NewLoader().LoadPath(path) }

func describeFSError(path string, err error) string {
	switch {
	case os.IsNotExist(err):
		return fmt.Sprintf("%s does not exist.", path)
	case os.IsPermission(err):
		return fmt.Sprintf("%s cannot be read: permission denied.", path)
	}
	return err.Error()
}
