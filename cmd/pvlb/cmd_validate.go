package main

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/peervault/pvlb/pkg/config"
)

// ValidateCmd checks a configuration.
type ValidateCmd struct {
	Output string `short:"o" default:"text" enum:"text,json" help:"Output format: ${enum}. JSON lists every diagnostic with its range."`
}

// Help is shown by pvlb validate --help.
func (c *ValidateCmd) Help() string {
	return `Loads the configuration named by -c and checks everything pvlb can check
without contacting a server: HCL syntax, block and attribute names (with
where a misplaced one belongs), value types, durations and sizes, strategy
kinds, references between blocks, duplicate names and addresses, weights,
endpoint addresses and metadata keys; the TLS files it names are read;
each discovery plugin decodes its block with its schema and checks its
values (formats, durations, names, the files it reads) without connecting.
Every other command runs the same checks before it starts.

On success it prints a one-line summary and exits 0. Otherwise it prints
every problem with its file:line:col and the offending source line, and
exits 1. Warnings (settings that have no effect) do not fail validation.

Examples:
  pvlb validate -c examples/basic.hcl
  pvlb validate -c ./config/ --output json`
}

type validateResult struct {
	Valid        bool             `json:"valid"`
	ErrorCount   int              `json:"error_count"`
	WarningCount int              `json:"warning_count"`
	Summary      string           `json:"summary,omitempty"`
	Diagnostics  []jsonDiagnostic `json:"diagnostics"`
}

// Run validates.
func (c *ValidateCmd) Run(a *app) error {
	loader, cfg, diags := a.checkConfig()
	res := validateResult{Valid: !diags.HasErrors(), Diagnostics: toJSONDiagnostics(diags)}
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			res.ErrorCount++
		} else {
			res.WarningCount++
		}
	}
	if res.Valid {
		res.Summary = summarize(cfg)
	}
	if c.Output == "json" {
		if err := writeJSON(a.stdout, res); err != nil {
			return err
		}
	} else {
		if len(diags) > 0 {
			a.renderDiagnostics(loader.Files(), diags)
		}
		if res.Valid {
			fmt.Fprintln(a.stdout, res.Summary)
		} else {
			fmt.Fprintf(a.stderr, "%s in %s.\n", plural(res.ErrorCount, "error", "errors"), strings.Join(a.globals.Config, ", "))
		}
	}
	if !res.Valid {
		return errReported
	}
	return nil
}

// summarize says what a valid configuration holds, e.g.
// "2 services, 3 discovery sources, 2 strategies: OK".
func summarize(cfg *config.Config) string {
	parts := []string{
		plural(len(cfg.Services), "service", "services"),
		plural(len(cfg.Discoveries), "discovery source", "discovery sources"),
		plural(len(cfg.Strategies), "strategy", "strategies"),
	}
	if n := len(cfg.HealthPolicies); n > 0 {
		parts = append(parts, plural(n, "health policy", "health policies"))
	}
	if n := len(cfg.Simulations); n > 0 {
		parts = append(parts, plural(n, "simulation", "simulations"))
	}
	if n := len(cfg.Scenarios); n > 0 {
		parts = append(parts, plural(n, "scenario", "scenarios"))
	}
	return strings.Join(parts, ", ") + ": OK"
}
