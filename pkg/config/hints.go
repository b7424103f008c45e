package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/agext/levenshtein"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// place is where a schema applies, as a message names it, with a skeleton
// that shows how to write something there.
type place struct {
	schema *hcl.BodySchema
	where  string // "a retry block inside a service"
	// skeleton shows a setting NAME at this place; %s stands for the
	// setting (name = ... or a block).
	skeleton string
}

// places lists every schema of the configuration language, so that a
// setting written in the wrong place is told where it belongs.
var places = []place{
	{fileSchema, "the top level of a file", "%s"},
	{serviceSchema, "a service block", "service \"NAME\" {\n  %s\n}"},
	{strategySchema, "a strategy block", "strategy \"NAME\" {\n  kind = \"round_robin\"\n  %s\n}"},
	{slowStartSchema, "a slow_start block inside a strategy", "strategy \"NAME\" {\n  slow_start {\n    %s\n  }\n}"},
	{hashKeySchema, "a hash_key block inside a strategy", "strategy \"NAME\" {\n  kind = \"ring_hash\"\n  hash_key {\n    %s\n  }\n}"},
	{stickySchema, "a sticky_session block inside a strategy", "strategy \"NAME\" {\n  sticky_session {\n    %s\n  }\n}"},
	{healthSchema, "a health_policy block", "health_policy \"NAME\" {\n  %s\n}"},
	{staticSchema, "a static discovery block", "discovery \"static\" \"NAME\" {\n  %s\n}"},
	{endpointSchema, "an endpoint block inside a static discovery block", "discovery \"static\" \"NAME\" {\n  endpoint \"ID\" {\n    %s\n  }\n}"},
	{pluginSchema, "a plugin block", "plugin \"KIND\" {\n  %s\n}"},
	{simulationSchema, "a simulation block", "simulation \"SERVICE\" {\n  %s\n}"},
	{simulatedServerSchema, "a server block inside a simulation block", "simulation \"SERVICE\" {\n  server \"ID\" {\n    %s\n  }\n}"},
	{retrySchema, "a retry block inside a service", "service \"NAME\" {\n  retry {\n    %s\n  }\n}"},
	{clientSchema, "a client block inside a service", "service \"NAME\" {\n  client {\n    %s\n  }\n}"},
	{tlsSchema, "a tls block inside a service's client block", "service \"NAME\" {\n  client {\n    tls {\n      %s\n    }\n  }\n}"},
	{outcomesSchema, "an outcomes block inside a service", "service \"NAME\" {\n  outcomes {\n    %s\n  }\n}"},
	{outlierSchema, "an outlier_detection block inside a service", "service \"NAME\" {\n  outlier_detection {\n    %s\n  }\n}"},
	{successRateSchema, "a success_rate block inside outlier_detection", "service \"NAME\" {\n  outlier_detection {\n    success_rate {\n      %s\n    }\n  }\n}"},
	{scenarioSchema, "a scenario block", "scenario \"NAME\" {\n  service = \"SERVICE\"\n  %s\n}"},
	{scenarioStepSchema, "an at block inside a scenario", "scenario \"NAME\" {\n  at \"10s\" {\n    %s\n  }\n}"},
	{scenarioServerSchema, "a server block inside a scenario's at block", "scenario \"NAME\" {\n  at \"10s\" {\n    server \"ID\" {\n      %s\n    }\n  }\n}"},
	{failurePercentageSchema, "a failure_percentage block inside outlier_detection", "service \"NAME\" {\n  outlier_detection {\n    failure_percentage {\n      %s\n    }\n  }\n}"},
}

var (
	unsupportedArgument = regexp.MustCompile(`^An argument named "([^"]+)" is not expected here`)
	unsupportedBlock    = regexp.MustCompile(`^Blocks of type "([^"]+)" are not expected here`)
)

// ExplainUnsupported is explainUnsupported for bodies decoded elsewhere,
// such as a plugin's discovery block with its plugin's schema.
func ExplainUnsupported(diags hcl.Diagnostics, schema *hcl.BodySchema) {
	explainUnsupported(diags, schema)
}

// explainUnsupported rewrites HCL's "Unsupported argument" and
// "Unsupported block type" diagnostics, found decoding a body with
// schema, to suggest the closest name the schema has (more typos than
// HCL's own suggestion catches) or, for a name that belongs elsewhere,
// where it belongs and how to write it there.
func explainUnsupported(diags hcl.Diagnostics, schema *hcl.BodySchema) {
	for _, d := range diags {
		var name string
		var isBlock bool
		switch {
		case d.Summary == "Unsupported argument":
			if m := unsupportedArgument.FindStringSubmatch(d.Detail); m != nil {
				name = m[1]
			}
		case d.Summary == "Unsupported block type":
			if m := unsupportedBlock.FindStringSubmatch(d.Detail); m != nil {
				name, isBlock = m[1], true
			}
		}
		if name == "" || strings.Contains(d.Detail, "Did you mean to define") {
			continue // not ours, or HCL saw an attribute written as a block
		}
		kind := "An argument"
		if isBlock {
			kind = "A block"
		}
		here := schemaNames(schema)
		detail := fmt.Sprintf("%s named %q is not expected here.", kind, name)
		if s := closest(name, here); s != "" {
			detail += fmt.Sprintf(" Did you mean %q?", s)
		} else if ps := belongsIn(name, schema); len(ps) > 0 {
			p := ps[0]
			what := name + " = ..."
			if isBlock || slices.ContainsFunc(p.schema.Blocks, func(b hcl.BlockHeaderSchema) bool { return b.Type == name }) {
				what = name + " { ... }"
			}
			wheres := make([]string, len(ps))
			for i, p := range ps {
				wheres[i] = p.where
			}
			detail += fmt.Sprintf(" %s belongs in %s, like this:\n\n%s", name, strings.Join(wheres, ", or in "), indent(fmt.Sprintf(p.skeleton, what)))
		} else if len(here) > 0 {
			detail += " Expected here: " + strings.Join(here, ", ") + "."
		} else {
			detail += " Nothing is expected here."
		}
		d.Detail = detail
	}
}

func indent(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }

// schemaNames lists a schema's attribute and block names, in order.
func schemaNames(schema *hcl.BodySchema) []string {
	var names []string
	for _, a := range schema.Attributes {
		names = append(names, a.Name)
	}
	for _, b := range schema.Blocks {
		names = append(names, b.Type)
	}
	return names
}

// belongsIn finds the places, other than schema's, that have name.
func belongsIn(name string, schema *hcl.BodySchema) []place {
	var found []place
	for _, p := range places {
		if p.schema != schema && slices.Contains(schemaNames(p.schema), name) {
			found = append(found, p)
		}
	}
	return found
}

// closest returns the candidate given is most likely a typo of: the same
// once case, dashes and underscores are set aside, one that contains the
// other, or one within a third of its length in edits (at least two).
func closest(given string, candidates []string) string {
	norm := func(s string) string {
		return strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(s))
	}
	g := norm(given)
	best, bestDist := "", max(3, len(g)/3+1)
	for _, c := range candidates {
		n := norm(c)
		if n == g {
			return c
		}
		d := levenshtein.Distance(g, n, nil)
		if len(g) >= 4 && len(n) >= 4 && (strings.Contains(n, g) || strings.Contains(g, n)) {
			d = min(d, 1)
		}
		if d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// ExplainVariables rewrites HCL's "Variables not allowed" and "Unknown
// variable" for a value that is a bare word: the user most likely meant
// text. attr names the attribute when it is known.
func ExplainVariables(diags hcl.Diagnostics, attr string) {
	for _, d := range diags {
		if d.Summary != "Variables not allowed" && d.Summary != "Unknown variable" {
			continue
		}
		trav, ok := d.Expression.(*hclsyntax.ScopeTraversalExpr)
		if !ok || len(trav.Traversal) != 1 {
			continue
		}
		word := trav.Traversal.RootName()
		fix := fmt.Sprintf("%q", word)
		if attr != "" {
			fix = fmt.Sprintf("%s = %q", attr, word)
		}
		d.Summary = "Unquoted text"
		d.Detail = fmt.Sprintf("%s is not a value pvlb knows. To give the text, quote it: %s.", word, fix)
	}
}
