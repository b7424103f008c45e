package discovery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/agext/levenshtein"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/peervault/pvlb/pkg/config"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/pluginapi"
)

// Pin returns the sha256 that the configuration pins for kind's plugin.
func Pin(cfg *config.Config, kind string) string {
	if p, ok := cfg.Plugin(kind); ok {
		return p.SHA256
	}
	return ""
}

// Settings returns what d's plugin is configured with: d's body decoded
// with the schema of its plugin, which is started once to ask for it.
// Static discovery is built in and has no plugin.
func (h *Host) Settings(ctx context.Context, cfg *config.Config, d *config.Discovery) (pluginapi.Settings, hcl.Diagnostics) {
	if d.Kind == config.StaticKind {
		return pluginapi.Settings{}, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Static discovery has no plugin",
			Detail:   "A static endpoint list is built in; it is read from the configuration, not from a plugin.",
			Subject:  d.KindRange.Ptr(),
		}}
	}
	r, err := h.Launch(ctx, d.Kind, Pin(cfg, d.Kind))
	if err != nil {
		return pluginapi.Settings{}, h.launchDiagnostics(d, err)
	}
	defer r.Kill()
	schema, err := r.Provider.SchemaErr(ctx)
	if err != nil {
		return pluginapi.Settings{}, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Discovery plugin failed",
			Detail:   fmt.Sprintf("The %s plugin (%s) did not give its settings schema: %s.", d.Kind, r.Plugin.Path, err),
			Subject:  d.KindRange.Ptr(),
		}}
	}
	settings, diags := DecodeSettings(d.Body, schema, config.EvalContext())
	if diags.HasErrors() {
		return settings, diags
	}
	// What the plugin can check without connecting, every command checks
	// before it starts: a run never meets a mistake validate missed.
	problems, err := r.Provider.Validate(ctx, settings)
	if err != nil {
		return pluginapi.Settings{}, append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Discovery plugin failed",
			Detail:   fmt.Sprintf("The %s plugin (%s) did not check its settings: %s.", d.Kind, r.Plugin.Path, config.RedactError(err)),
			Subject:  d.KindRange.Ptr(),
		})
	}
	for _, p := range problems {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Invalid " + d.Kind + " setting",
			Detail:   config.Redact(strings.TrimSuffix(p.Error(), ".") + "."),
			Subject:  settingRange(d, p.Attribute).Ptr(),
		})
	}
	if diags.HasErrors() {
		return pluginapi.Settings{}, diags
	}
	return settings, diags
}

// settingRange finds where a discovery block sets attribute ("tls.ca_file"
// inside a block): its value, or the block it is in, or the block itself.
func settingRange(d *config.Discovery, attribute string) hcl.Range {
	body, ok := d.Body.(*hclsyntax.Body)
	rng := d.DeclRange
	if !ok || attribute == "" {
		return rng
	}
	parts := strings.Split(attribute, ".")
	for _, blockType := range parts[:len(parts)-1] {
		var next *hclsyntax.Body
		for _, b := range body.Blocks {
			if b.Type == blockType {
				next, rng = b.Body, b.DefRange()
				break
			}
		}
		if next == nil {
			return rng
		}
		body = next
	}
	if attr, ok := body.Attributes[parts[len(parts)-1]]; ok {
		return attr.Expr.Range()
	}
	return rng
}

func (h *Host) launchDiagnostics(d *config.Discovery, err error) hcl.Diagnostics {
	var nf *NotFoundError
	if errors.As(err, &nf) {
		kinds := []string{config.StaticKind} // built in, no plugin
		for _, p := range h.finder.List() {
			kinds = append(kinds, p.Kind)
		}
		slices.Sort(kinds)
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Unknown discovery kind",
			Detail:   fmt.Sprintf("%s.%s%s", nf.Error(), suggestKind(d.Kind, kinds), listKinds(kinds)),
			Subject:  d.KindRange.Ptr(),
		}}
	}
	return hcl.Diagnostics{{
		Severity: hcl.DiagError,
		Summary:  "Cannot start discovery plugin",
		Detail:   err.Error() + ".",
		Subject:  d.KindRange.Ptr(),
	}}
}

func suggestKind(kind string, kinds []string) string {
	best, dist := "", 3
	for _, k := range kinds {
		if d := levenshtein.Distance(kind, k, nil); d < dist {
			best, dist = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" Did you mean %q?", best)
}

func listKinds(kinds []string) string {
	if len(kinds) == 0 {
		return ""
	}
	return " Kinds available: " + strings.Join(kinds, ", ") + "."
}

// Check decodes every discovery block of a plugin kind with its plugin's
// schema, as `pvlb validate` does; static blocks were checked on load.
func (h *Host) Check(ctx context.Context, cfg *config.Config) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, d := range cfg.Discoveries {
		if d.Kind == config.StaticKind {
			continue
		}
		_, ds := h.Settings(ctx, cfg, d)
		diags = append(diags, ds...)
	}
	return diags
}

// Endpoints returns service's endpoints as d finds them once, for commands
// that need a list rather than a live feed: a static list as written, or
// what d's plugin resolves, sorted by id.
func (h *Host) Endpoints(ctx context.Context, cfg *config.Config, d *config.Discovery, service string) ([]lb.EndpointSpec, error) {
	if d.Kind == config.StaticKind {
		return d.Specs(), nil
	}
	instances, err := h.Resolve(ctx, cfg, d, service)
	if err != nil {
		return nil, err
	}
	return Specs(instances), nil
}

// Resolve starts d's plugin, configures it and asks once for service's
// instances.
func (h *Host) Resolve(ctx context.Context, cfg *config.Config, d *config.Discovery, service string) ([]pluginapi.ServiceInstance, error) {
	settings, diags := h.Settings(ctx, cfg, d)
	if diags.HasErrors() {
		return nil, diagError(diags)
	}
	r, err := h.Launch(ctx, d.Kind, Pin(cfg, d.Kind))
	if err != nil {
		return nil, err
	}
	defer r.Kill()
	if err := r.Provider.Configure(ctx, settings); err != nil {
		return nil, fmt.Errorf("discovery %q: %w", d.Kind, config.RedactError(err))
	}
	instances, err := r.Provider.Resolve(ctx, service)
	if err != nil {
		return nil, fmt.Errorf("discovery %q: %w", d.Kind, config.RedactError(err))
	}
	slices.SortFunc(instances, func(a, b pluginapi.ServiceInstance) int { return strings.Compare(a.ID, b.ID) })
	return instances, nil
}

func diagError(diags hcl.Diagnostics) error {
	var msgs []string
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			msgs = append(msgs, (hcl.Diagnostics{d}).Error())
		}
	}
	return errors.New(strings.Join(msgs, "; "))
}
