package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/agext/levenshtein"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/zclconf/go-cty/cty"

	"github.com/peervault/pvlb/pkg/statuscode"
)

// attrs wraps a block's attributes with typed decoders that report
// problems as diagnostics on the attribute's expression.
type attrs struct {
	m     hcl.Attributes
	ctx   *hcl.EvalContext
	diags hcl.Diagnostics
	// sensitive holds the attributes whose values came from env().
	sensitive map[string]bool
}

func (a *attrs) errorf(rng hcl.Range, summary, format string, args ...any) {
	a.diags = append(a.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  rng.Ptr(),
	})
}

// decode evaluates attribute name into target; false if absent or bad.
func (a *attrs) decode(name string, target any) (*hcl.Attribute, bool) {
	attr, ok := a.m[name]
	if !ok {
		return nil, false
	}
	// Evaluate first, so a failed function call is reported once rather
	// than again as an unknown value of the wrong type.
	val, d := attr.Expr.Value(a.ctx)
	ExplainVariables(d, attr.Name)
	a.diags = append(a.diags, d...)
	if d.HasErrors() {
		return attr, false
	}
	if val.ContainsMarked() {
		if a.sensitive == nil {
			a.sensitive = map[string]bool{}
		}
		a.sensitive[name] = true
		val, _ = val.UnmarkDeep()
	}
	d = gohcl.DecodeExpression(hcl.StaticExpr(val, attr.Expr.Range()), nil, target)
	a.diags = append(a.diags, d...)
	return attr, !d.HasErrors()
}

func (a *attrs) string(name string, dst *string) {
	var s string
	if _, ok := a.decode(name, &s); ok {
		*dst = s
	}
}

func (a *attrs) bool(name string, dst *bool) {
	var b bool
	if _, ok := a.decode(name, &b); ok {
		*dst = b
	}
}

// shown is value, read from attribute name, as a message may show it:
// quoted, with control characters escaped and long values cut short, or
// not at all when it came from env().
func (a *attrs) shown(name, value string) string {
	if a.sensitive[name] {
		return "the value from env()"
	}
	return quoteShort(value)
}

// didYouMean is the package's didYouMean, unless the value came from
// env(): naming a close match would tell what the value is.
func (a *attrs) didYouMean(name, given string, candidates []string) string {
	if a.sensitive[name] {
		return ""
	}
	return didYouMean(given, candidates)
}

// scrub replaces value in text (an error that quotes it) with what shown
// gives, when the value came from env().
func (a *attrs) scrub(name, value, text string) string {
	if !a.sensitive[name] || value == "" {
		return text
	}
	text = strings.ReplaceAll(text, strconv.Quote(value), a.shown(name, value))
	return strings.ReplaceAll(text, value, a.shown(name, value))
}

// shownNumber is f as a message may show it.
func (a *attrs) shownNumber(name string, f float64) string {
	if a.sensitive[name] {
		return "the value from env()"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// maxShown is the most characters of a value a message quotes.
const maxShown = 80

// quoteShort quotes s as Go would, escaping control characters, and cuts
// it to maxShown characters.
func quoteShort(s string) string {
	if r := []rune(s); len(r) > maxShown {
		return strconv.Quote(string(r[:maxShown])) + fmt.Sprintf("… (%d characters)", len(r))
	}
	return strconv.Quote(s)
}

// int decodes a whole number within [lo, hi].
func (a *attrs) int(name string, lo, hi int, dst *int) { a.intHint(name, lo, hi, "", dst) }

// intHint is int with a sentence added to its error.
func (a *attrs) intHint(name string, lo, hi int, hint string, dst *int) {
	var f float64
	attr, ok := a.decode(name, &f)
	if !ok {
		return
	}
	if f != math.Trunc(f) || f < float64(lo) || f > float64(hi) {
		summary := "Invalid " + name
		if hint != "" {
			hint = " " + hint
		}
		a.errorf(attr.Expr.Range(), summary, "%s must be a whole number from %d to %d, not %s.%s", name, lo, hi, a.shownNumber(name, f), hint)
		return
	}
	*dst = int(f)
}

// float decodes a number within [lo, hi].
func (a *attrs) float(name string, lo, hi float64, dst *float64) {
	var f float64
	attr, ok := a.decode(name, &f)
	if !ok {
		return
	}
	if f < lo || f > hi || math.IsNaN(f) {
		a.errorf(attr.Expr.Range(), "Value out of range", "%s must be from %g to %g, not %s.", name, lo, hi, a.shownNumber(name, f))
		return
	}
	*dst = f
}

// duration decodes a Go duration string such as "1.5s" or "10m"; zero is
// allowed only where allowZero says so.
func (a *attrs) duration(name string, allowZero bool, dst *time.Duration) {
	var s string
	attr, ok := a.decode(name, &s)
	if !ok {
		return
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		a.errorf(attr.Expr.Range(), "Invalid duration", "%s = %s is not a duration. Write a number with a unit: \"500ms\", \"30s\", \"5m\", \"1h30m\".", name, a.shown(name, s))
	case d < 0 || (d == 0 && !allowZero):
		want := "positive"
		if allowZero {
			want = "zero or positive"
		}
		a.errorf(attr.Expr.Range(), "Invalid duration", "%s must be %s, not %s.", name, want, a.shown(name, s))
	default:
		*dst = d
	}
}

// size decodes a byte size such as "8MiB", "4MB" or "1024".
func (a *attrs) size(name string, dst *int) {
	var s string
	attr, ok := a.decode(name, &s)
	if !ok {
		return
	}
	n, err := parseSize(s)
	if err != nil {
		a.errorf(attr.Expr.Range(), "Invalid size", "%s = %s: %s.", name, a.shown(name, s), err)
		return
	}
	*dst = n
}

// stringMap decodes a map of strings, such as endpoint metadata.
func (a *attrs) stringMap(name string, dst *map[string]string) {
	var m map[string]string
	if _, ok := a.decode(name, &m); ok {
		*dst = m
	}
}

// codes decodes a list of gRPC status code names, such as
// ["UNAVAILABLE", "RESOURCE_EXHAUSTED"].
func (a *attrs) codes(name string, dst *statuscode.Set) {
	var names []string
	attr, ok := a.decode(name, &names)
	if !ok {
		return
	}
	var set statuscode.Set
	for _, n := range names {
		c, known := statuscode.Parse(n)
		switch {
		case !known:
			names := statuscode.Names()[1:]
			a.errorf(attr.Expr.Range(), "Unknown status code", "%s is not a gRPC status code.%s Known codes: %s.",
				a.shown(name, n), a.didYouMean(name, strings.ToUpper(n), names), strings.Join(names, ", "))
			return
		case c == statuscode.OK:
			a.errorf(attr.Expr.Range(), "Invalid status code", "OK is success; it cannot be listed in %s.", name)
			return
		}
		set |= statuscode.SetOf(c)
	}
	*dst = set
}

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"kb": 1000, "mb": 1000 * 1000, "gb": 1000 * 1000 * 1000,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30,
}

// maxSize is the largest message size gRPC accepts (it counts in int32).
const maxSize = math.MaxInt32

func parseSize(s string) (int, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return !unicode.IsDigit(r) && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.TrimSpace(t[i:])
	}
	mult, ok := sizeUnits[strings.ToLower(unit)]
	if !ok || num == "" {
		return 0, fmt.Errorf("want a number of bytes with an optional unit (B, KB, MB, GB, KiB, MiB, GiB), like \"8MiB\"")
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", num)
	}
	n := f * float64(mult)
	if n < 1 || n > maxSize {
		return 0, fmt.Errorf("must be from 1 byte to %d bytes (2GiB less one byte, gRPC's limit)", maxSize)
	}
	if n != math.Trunc(n) {
		return 0, fmt.Errorf("is not a whole number of bytes")
	}
	return int(n), nil
}

// suggest returns the candidate closest to given, if it is close enough to
// be a likely typo, as HCL itself suggests attribute names.
func suggest(given string, candidates []string) string {
	best, bestDist := "", 3 // more than two edits is not a typo
	for _, c := range candidates {
		if d := levenshtein.Distance(given, c, nil); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// didYouMean formats a suggestion as a sentence, or nothing.
func didYouMean(given string, candidates []string) string {
	if s := suggest(given, candidates); s != "" {
		return fmt.Sprintf(" Did you mean %q?", s)
	}
	return ""
}

// ctyString renders a constant expression's value for messages, or "".
func ctyString(v cty.Value) string {
	if v.IsKnown() && !v.IsNull() && v.Type() == cty.String {
		return v.AsString()
	}
	return ""
}
