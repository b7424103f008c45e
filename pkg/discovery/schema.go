package discovery

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/peervault/pvlb/pkg/config"
	"github.com/peervault/pvlb/pkg/pluginapi"
)

// Spec turns a plugin's schema into an hcldec spec, so pvlb can decode and
// check a discovery block's body as HCL tools do: unknown and missing
// attributes and wrong types become diagnostics at file:line:col.
func Spec(s pluginapi.Schema) (hcldec.Spec, error) {
	obj := hcldec.ObjectSpec{}
	for _, a := range s.Attributes {
		t, err := ctyType(a.Type)
		if err != nil {
			return nil, fmt.Errorf("attribute %q: %w", a.Name, err)
		}
		obj[a.Name] = &hcldec.AttrSpec{Name: a.Name, Type: t, Required: a.Required}
	}
	for _, b := range s.Blocks {
		if _, clash := obj[b.Name]; clash {
			return nil, fmt.Errorf("block %q has the name of an attribute", b.Name)
		}
		inner, err := Spec(b.Schema)
		if err != nil {
			return nil, fmt.Errorf("block %q: %w", b.Name, err)
		}
		switch {
		case len(b.Labels) > 0:
			obj[b.Name] = &hcldec.BlockMapSpec{TypeName: b.Name, LabelNames: b.Labels, Nested: inner}
		case b.Multiple:
			spec := &hcldec.BlockListSpec{TypeName: b.Name, Nested: inner}
			if b.Required {
				spec.MinItems = 1
			}
			obj[b.Name] = spec
		default:
			obj[b.Name] = &hcldec.BlockSpec{TypeName: b.Name, Nested: inner, Required: b.Required}
		}
	}
	return obj, nil
}

func ctyType(t pluginapi.Type) (cty.Type, error) {
	switch t {
	case pluginapi.String:
		return cty.String, nil
	case pluginapi.Number:
		return cty.Number, nil
	case pluginapi.Bool:
		return cty.Bool, nil
	case pluginapi.ListOfString:
		return cty.List(cty.String), nil
	case pluginapi.MapOfString:
		return cty.Map(cty.String), nil
	}
	return cty.NilType, fmt.Errorf("unknown type %q (want string, number, bool, list(string) or map(string))", t)
}

// DecodeSettings decodes a discovery block's body with the plugin's schema
// into the Settings the plugin's Configure receives.
func DecodeSettings(body hcl.Body, schema pluginapi.Schema, ctx *hcl.EvalContext) (pluginapi.Settings, hcl.Diagnostics) {
	spec, err := Spec(schema)
	if err != nil {
		return pluginapi.Settings{}, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid plugin schema",
			Detail:   fmt.Sprintf("The plugin's schema cannot be used: %s. This is a bug in the plugin.", err),
			Subject:  body.MissingItemRange().Ptr(),
		}}
	}
	val, diags := hcldec.Decode(body, spec, ctx)
	names := &hcl.BodySchema{}
	for _, a := range schema.Attributes {
		names.Attributes = append(names.Attributes, hcl.AttributeSchema{Name: a.Name})
	}
	config.ExplainUnsupported(diags, names)
	config.ExplainVariables(diags, "")
	config.RedactDiagnostics(diags)
	if diags.HasErrors() {
		return pluginapi.Settings{}, diags
	}
	// Values from env() are marked sensitive; the plugin gets them plain.
	val, _ = val.UnmarkDeep()
	for _, a := range schema.Attributes {
		if v := val.GetAttr(a.Name); a.Sensitive && v.IsKnown() && !v.IsNull() && v.Type() == cty.String {
			config.AddSecret(v.AsString())
		}
	}
	b, err := ctyjson.SimpleJSONValue{Value: val}.MarshalJSON()
	if err != nil {
		return pluginapi.Settings{}, append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Cannot encode settings",
			Detail:   err.Error(),
			Subject:  body.MissingItemRange().Ptr(),
		})
	}
	return pluginapi.NewSettings(b), diags
}
