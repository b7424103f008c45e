package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/mitchellh/go-wordwrap"

	"github.com/hashicorp/hcl/v2"
	"golang.org/x/term"

	"github.com/peervault/pvlb/pkg/config"
)

// loadConfig loads the configuration named by -c, rendering diagnostics on
// stderr; it returns errReported when there are errors.
func (a *app) loadConfig() (*config.Config, error) {
	loader, cfg, diags := a.checkConfig()
	if len(diags) > 0 {
		a.renderDiagnostics(loader.Files(), diags)
	}
	if diags.HasErrors() {
		return nil, errReported
	}
	return cfg, nil
}

// checkConfig loads the configuration named by -c and, when it is sound,
// decodes every plugin discovery block with its plugin's schema.
func (a *app) checkConfig() (*config.Loader, *config.Config, hcl.Diagnostics) {
	loader := config.NewLoader()
	cfg, diags := loader.LoadPath(a.globals.Config)
	if !diags.HasErrors() && cfg != nil {
		diags = append(diags, a.pluginHost(cfg).Check(context.Background(), cfg)...)
	}
	return loader, cfg, diags
}

// renderDiagnostics prints each diagnostic as HCL tools do, with the
// position as file:line:col so editors and terminals can jump to it, the
// source line, and a caret line under the offending range.
func (a *app) renderDiagnostics(files map[string]*hcl.File, diags hcl.Diagnostics) {
	width := 0
	if f, ok := file(a.stderr); ok && isTerminal(a.stderr) {
		if w, _, err := term.GetSize(int(f.Fd())); err == nil {
			width = min(w, 100)
		}
	}
	color := useColor(a.stderr)
	for _, d := range diags {
		writeDiagnostic(a.stderr, files, d, width, color)
	}
}

func writeDiagnostic(w io.Writer, files map[string]*hcl.File, d *hcl.Diagnostic, width int, color bool) {
	label, ansi := "Error", "\x1b[1;31m"
	if d.Severity == hcl.DiagWarning {
		label, ansi = "Warning", "\x1b[1;33m"
	}
	if color {
		fmt.Fprintf(w, "%s%s:\x1b[0m \x1b[1m%s\x1b[0m\n", ansi, label, d.Summary)
	} else {
		fmt.Fprintf(w, "%s: %s\n", label, d.Summary)
	}
	if r := d.Subject; r != nil {
		fmt.Fprintf(w, "\n  on %s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
		file := files[r.Filename]
		if file != nil {
			if nav, ok := file.Nav.(interface{ ContextString(int) string }); ok {
				if ctx := nav.ContextString(r.Start.Byte); ctx != "" {
					fmt.Fprintf(w, ", in %s", ctx)
				}
			}
		}
		fmt.Fprintln(w, ":")
		if file != nil {
			writeSource(w, file.Bytes, *r)
		}
	}
	if d.Detail != "" {
		detail := d.Detail
		if width > 0 {
			detail = wordwrap.WrapString(detail, uint(width-1))
		}
		fmt.Fprintf(w, "\n%s\n", detail)
	}
	fmt.Fprintln(w)
}

// writeSource prints the first line of rng with its number, and carets under
// the part rng covers.
func writeSource(w io.Writer, src []byte, rng hcl.Range) {
	lines := strings.Split(string(src), "\n")
	if rng.Start.Line < 1 || rng.Start.Line > len(lines) {
		return
	}
	line := strings.TrimRight(lines[rng.Start.Line-1], "\r")
	prefix := fmt.Sprintf("  %3d: ", rng.Start.Line)
	fmt.Fprintf(w, "%s%s\n", prefix, line)
	// Columns count characters; tabs keep their place so carets line up.
	runes := []rune(line)
	start := min(max(rng.Start.Column-1, 0), len(runes))
	end := len(runes)
	if rng.End.Line == rng.Start.Line {
		end = min(max(rng.End.Column-1, start+1), len(runes))
	}
	var pad strings.Builder
	for _, r := range runes[:start] {
		if r == '\t' {
			pad.WriteRune('\t')
		} else {
			pad.WriteByte(' ')
		}
	}
	if n := end - start; n > 0 {
		fmt.Fprintf(w, "%s%s%s\n", strings.Repeat(" ", len(prefix)), pad.String(), strings.Repeat("^", n))
	}
}

// jsonDiagnostic is a diagnostic as data.
type jsonDiagnostic struct {
	Severity string     `json:"severity"`
	Summary  string     `json:"summary"`
	Detail   string     `json:"detail,omitempty"`
	Range    *jsonRange `json:"range,omitempty"`
}

type jsonRange struct {
	Filename string  `json:"filename"`
	Start    jsonPos `json:"start"`
	End      jsonPos `json:"end"`
}

type jsonPos struct {
	Line   int `json:"line"`
	Column int `json:"column"`
	Byte   int `json:"byte"`
}

func toJSONDiagnostics(diags hcl.Diagnostics) []jsonDiagnostic {
	out := make([]jsonDiagnostic, 0, len(diags))
	for _, d := range diags {
		jd := jsonDiagnostic{Severity: "error", Summary: d.Summary, Detail: d.Detail}
		if d.Severity == hcl.DiagWarning {
			jd.Severity = "warning"
		}
		if r := d.Subject; r != nil {
			jd.Range = &jsonRange{
				Filename: r.Filename,
				Start:    jsonPos{r.Start.Line, r.Start.Column, r.Start.Byte},
				End:      jsonPos{r.End.Line, r.End.Column, r.End.Byte},
			}
		}
		out = append(out, jd)
	}
	return out
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
