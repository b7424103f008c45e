package config

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// EvalContext is what expressions may use: functions only. References to
// other blocks are not values; they are read as traversals by the decoder.
// Plugins' discovery bodies are evaluated with it too.
func EvalContext() *hcl.EvalContext {
	return &hcl.EvalContext{Functions: functions()}
}

// functions is the explicit function table, as Packer keeps one: env() for
// settings that come from the environment, and cty's standard library.
func functions() map[string]function.Function {
	return map[string]function.Function{
		"env":        envFunc,
		"abs":        stdlib.AbsoluteFunc,
		"ceil":       stdlib.CeilFunc,
		"chomp":      stdlib.ChompFunc,
		"coalesce":   stdlib.CoalesceFunc,
		"concat":     stdlib.ConcatFunc,
		"contains":   stdlib.ContainsFunc,
		"floor":      stdlib.FloorFunc,
		"format":     stdlib.FormatFunc,
		"formatlist": stdlib.FormatListFunc,
		"indent":     stdlib.IndentFunc,
		"join":       stdlib.JoinFunc,
		"jsondecode": stdlib.JSONDecodeFunc,
		"jsonencode": stdlib.JSONEncodeFunc,
		"keys":       stdlib.KeysFunc,
		"length":     stdlib.LengthFunc,
		"lookup":     stdlib.LookupFunc,
		"lower":      stdlib.LowerFunc,
		"max":        stdlib.MaxFunc,
		"merge":      stdlib.MergeFunc,
		"min":        stdlib.MinFunc,
		"parseint":   stdlib.ParseIntFunc,
		"regex":      stdlib.RegexFunc,
		"replace":    stdlib.ReplaceFunc,
		"split":      stdlib.SplitFunc,
		"strrev":     stdlib.ReverseFunc,
		"substr":     stdlib.SubstrFunc,
		"title":      stdlib.TitleFunc,
		"tonumber":   stdlib.MakeToFunc(cty.Number),
		"tostring":   stdlib.MakeToFunc(cty.String),
		"tobool":     stdlib.MakeToFunc(cty.Bool),
		"trimspace":  stdlib.TrimSpaceFunc,
		"upper":      stdlib.UpperFunc,
		"values":     stdlib.ValuesFunc,
	}
}

// envFunc is env(name) or env(name, default). An unset variable with no
// default is an error rather than an empty string: a missing token should
// fail validation, not a request at three in the morning. The value never
// appears in an error message.
var envFunc = function.New(&function.Spec{
	Description: "Returns the value of an environment variable, or the default when it is unset.",
	Params:      []function.Parameter{{Name: "name", Type: cty.String}},
	VarParam:    &function.Parameter{Name: "default", Type: cty.String},
	Type:        function.StaticReturnType(cty.String),
	RefineResult: func(b *cty.RefinementBuilder) *cty.RefinementBuilder {
		return b.NotNull()
	},
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		if len(args) > 2 {
			return cty.NilVal, function.NewArgErrorf(2, "env takes a name and at most one default")
		}
		name := args[0].AsString()
		if v, ok := os.LookupEnv(name); ok {
			rememberEnvValue(v)
			return cty.StringVal(v).Mark(Sensitive), nil
		}
		if len(args) == 2 {
			return args[1].Mark(Sensitive), nil
		}
		return cty.NilVal, fmt.Errorf("environment variable %s is not set; set it, or give a default: env(%q, \"\")", name, name)
	},
})

type sensitiveMark string

// Sensitive marks a value that came from env(): it may be a secret, so no
// message shows it (as Terraform marks its sensitive values). Functions
// applied to a marked value return a marked value.
const Sensitive = sensitiveMark("sensitive")

// minSecretLength is the shortest value redaction hides: shorter ones
// would hide ordinary words and numbers, and guess at no secret.
const minSecretLength = 4

// redactions is a set of values to hide, longest first so that a value
// inside another goes second.
type redactions struct {
	sync.Mutex
	values []string
}

func (r *redactions) add(v string) {
	if len(v) < minSecretLength {
		return
	}
	r.Lock()
	defer r.Unlock()
	if slices.Contains(r.values, v) {
		return
	}
	r.values = append(r.values, v)
	slices.SortFunc(r.values, func(a, b string) int { return len(b) - len(a) })
}

func (r *redactions) apply(s string) string {
	r.Lock()
	defer r.Unlock()
	for _, v := range r.values {
		s = strings.ReplaceAll(s, v, Redacted)
	}
	return s
}

var (
	// envValues are the values env() has returned in this process: no
	// configuration message shows one, even one that quotes it anyway (a
	// function's own error, say "cannot convert "…" to number").
	envValues redactions
	// secrets are the values of settings a plugin declares sensitive
	// (tokens, passwords): nothing pvlb prints shows one.
	secrets redactions
)

func rememberEnvValue(v string) { envValues.add(v) }

// AddSecret makes Redact hide v: the discovery host adds the values of the
// settings a plugin declares sensitive, even when written literally.
func AddSecret(v string) { secrets.add(v) }

// Redacted stands in for a hidden value.
const Redacted = "(sensitive value)"

// Redact replaces every secret (see AddSecret) in s with Redacted.
func Redact(s string) string { return secrets.apply(s) }

// RedactError returns err with its message redacted; errors.Is and As
// still see err. Nil stays nil.
func RedactError(err error) error {
	if err == nil {
		return nil
	}
	return redactedError{err}
}

type redactedError struct{ err error }

func (e redactedError) Error() string { return Redact(e.err.Error()) }
func (e redactedError) Unwrap() error { return e.err }

// RedactDiagnostics hides secrets and values from env() in the summaries
// and details of configuration diagnostics, in place, and returns them.
func RedactDiagnostics(diags hcl.Diagnostics) hcl.Diagnostics {
	for _, d := range diags {
		d.Summary, d.Detail = Redact(envValues.apply(d.Summary)), Redact(envValues.apply(d.Detail))
	}
	return diags
}
