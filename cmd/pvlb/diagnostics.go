package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

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
	cfg, diags := loader.LoadPaths(a.globals.Config)
	if !diags.HasErrors() && cfg != nil {
		diags = append(diags, a.pluginHost(cfg).Check(a.ctx, cfg)...)
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
	for i, d := range diags {
		if i == maxDiagnosticsShown {
			fmt.Fprintf(a.stderr, "%s not shown; fix these first, or run with --output json for all.\n\n",
				plural(len(diags)-i, "more diagnostic", "more diagnostics"))
			break
		}
		writeDiagnostic(a.stderr, files, d, width, color)
	}
}

// maxDiagnosticsShown bounds the diagnostics printed as text: past a
// screenful, the first ones are the ones to fix (later ones often follow
// from them), and a file of random bytes would otherwise flood the terminal.
const maxDiagnosticsShown = 20

func writeDiagnostic(w io.Writer, files map[string]*hcl.File, d *hcl.Diagnostic, width int, color bool) {
	label, ansi := "Error", "\x1b[1;31m"
	if d.Severity == hcl.DiagWarning {
		label, ansi = "Warning", "\x1b[1;33m"
	}
	if color {
		fmt.Fprintf(w, "%s%s:\x1b[0m \x1b[1m%s\x1b[0m\n", ansi, label, cut(d.Summary, maxSourceWidth))
	} else {
		fmt.Fprintf(w, "%s: %s\n", label, cut(d.Summary, maxSourceWidth))
	}
	if r := d.Subject; r != nil {
		fmt.Fprintf(w, "\n  on %s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
		file := files[r.Filename]
		if file != nil {
			if nav, ok := file.Nav.(interface{ ContextString(int) string }); ok {
				if ctx := nav.ContextString(r.Start.Byte); ctx != "" {
					fmt.Fprintf(w, ", in %s", cut(ctx, maxSourceWidth))
				}
			}
		}
		fmt.Fprintln(w, ":")
		if file != nil {
			writeSource(w, file.Bytes, *r)
		}
	}
	if d.Detail != "" {
		detail := cut(d.Detail, maxDetail)
		if width > 0 {
			detail = wordwrap.WrapString(detail, uint(width-1))
		}
		fmt.Fprintf(w, "\n%s\n", detail)
	}
	fmt.Fprintln(w)
}

// maxDetail bounds a diagnostic's explanation, which may quote what it
// rejects.
const maxDetail = 2000

// cut shortens s to n characters, marking the cut.
func cut(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

// maxSourceWidth is the most characters of a source line a diagnostic
// shows: a longer line is cut to a window around the part it points at.
const maxSourceWidth = 120

// writeSource prints the first line of rng with its number, and carets under
// the part rng covers. Control characters print as U+FFFD, so that a file
// cannot drive the terminal, and a long line shows only a window.
func writeSource(w io.Writer, src []byte, rng hcl.Range) {
	line, ok := sourceLine(src, rng.Start.Line)
	if !ok {
		return
	}
	runes := []rune(line)
	for i, r := range runes {
		if r != '\t' && (unicode.IsControl(r) || r == utf8.RuneError) {
			runes[i] = '\uFFFD'
		}
	}
	start := min(max(rng.Start.Column-1, 0), len(runes))
	end := len(runes)
	if rng.End.Line == rng.Start.Line {
		end = min(max(rng.End.Column-1, start+1), len(runes))
	}
	// Cut to a window that starts a little before the range.
	from, to := 0, len(runes)
	if to > maxSourceWidth {
		from = max(0, min(start-maxSourceWidth/4, len(runes)-maxSourceWidth))
		to = from + maxSourceWidth
	}
	shown := string(runes[from:to])
	lead, trail := "", ""
	if from > 0 {
		lead = "…"
	}
	if to < len(runes) {
		trail = "…"
	}
	prefix := fmt.Sprintf("  %3d: ", rng.Start.Line)
	fmt.Fprintf(w, "%s%s%s%s\n", prefix, lead, shown, trail)
	start, end = min(max(start, from), to), min(end, to)
	// Columns count characters; tabs keep their place so carets line up.
	var pad strings.Builder
	pad.WriteString(strings.Repeat(" ", len(prefix)+len([]rune(lead))))
	for _, r := range runes[from:start] {
		if r == '\t' {
			pad.WriteRune('\t')
		} else {
			pad.WriteByte(' ')
		}
	}
	if n := end - start; n > 0 {
		fmt.Fprintf(w, "%s%s\n", pad.String(), strings.Repeat("^", n))
	}
}

// sourceLine returns line n (from 1) of src, without its line ending.
func sourceLine(src []byte, n int) (string, bool) {
	for i := 1; i < n; i++ {
		j := bytes.IndexByte(src, '\n')
		if j < 0 {
			return "", false
		}
		src = src[j+1:]
	}
	if n < 1 {
		return "", false
	}
	if j := bytes.IndexByte(src, '\n'); j >= 0 {
		src = src[:j]
	}
	return strings.TrimRight(string(src), "\r"), true
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
