package config

import (
	"fmt"
	"io"
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
func (l *Loader) LoadPath(path string) (*Config, hcl.Diagnostics) { return l.LoadPaths([]string{path}) }

// LoadPaths loads files and directories together, as one configuration:
// blocks in one may refer to blocks in another. A file named twice is read
// once.
func (l *Loader) LoadPaths(paths []string) (*Config, hcl.Diagnostics) {
	var files []string
	var diags hcl.Diagnostics
	seen := map[string]bool{}
	for _, path := range paths {
		found, d := filesOf(path)
		diags = append(diags, d...)
		for _, f := range found {
			key := f
			if abs, err := filepath.Abs(f); err == nil {
				key = abs
			}
			if !seen[key] {
				seen[key] = true
				files = append(files, f)
			}
		}
	}
	if diags.HasErrors() {
		return nil, diags
	}
	sources := make(map[string][]byte, len(files))
	for _, p := range files {
		src, err := readLimited(p)
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

// readLimited reads a file, but no more than one byte past MaxFileSize:
// enough for checkShape to refuse it, without reading gigabytes first.
func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, MaxFileSize+1))
}

// filesOf lists the configuration files path names: itself, or a
// directory's *.hcl files in name order.
func filesOf(path string) ([]string, hcl.Diagnostics) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read configuration",
			Detail:   describeFSError(path, err),
		}}
	}
	if !info.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read configuration directory", Detail: describeFSError(path, err)}}
	}
	var paths []string
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
	return paths, nil
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
