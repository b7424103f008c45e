package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
)

var hclFence = regexp.MustCompile("(?s)```hcl\n(.*?)```")

// TestDocsExamples keeps the HCL in the README and the docs true: every
// example loads without an error, as a whole file, or, for a fragment of
// a service (a retry or client block, say), inside one.
func TestDocsExamples(t *testing.T) {
	docs, _ := filepath.Glob("../../docs/*.md")
	providers, _ := filepath.Glob("../../docs/providers/*.md")
	docs = append(append(docs, providers...), "../../README.md")
	t.Setenv("CONSUL_TOKEN", "doc-example") // examples read these with env()
	t.Setenv("POD_ZONE", "eu-west-1a")
	t.Setenv("POD_ORDINAL", "3")
	var checked int
	for _, doc := range docs {
		text, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range hclFence.FindAllStringSubmatch(string(text), -1) {
			name := filepath.Base(doc) + "#" + string(rune('a'+i))
			src := m[1]
			if _, diags := hclparse.NewParser().ParseHCL([]byte(src), name); diags.HasErrors() {
				t.Errorf("%s: example does not parse:\n%s\n%v", name, src, diags)
				continue
			}
			checked++
			if diags := loadExample(src); len(diags) > 0 {
				t.Errorf("%s: example does not load:\n%s\n%v", name, src, errorsOf(diags))
			}
		}
	}
	if checked < 5 {
		t.Fatalf("only %d HCL examples found in the docs", checked)
	}
}

// loadExample loads a doc's example as a configuration, and returns its
// errors. A fragment that belongs in a service is loaded inside one; a
// simulation or scenario block gets the service it names. TLS files the example names
// are on the reader's machine, not here: their absence is no error of
// the example's.
func loadExample(src string) hcl.Diagnostics {
	const static = "\ndiscovery \"static\" \"doc_example\" {\n  endpoint \"a\" { address = \"127.0.0.1:50051\" }\n}\n"
	attempts := []string{src}
	m := regexp.MustCompile(`(?m)^simulation "([^"]+)"`).FindStringSubmatch(src)
	if m == nil && strings.Contains(src, "scenario \"") {
		m = regexp.MustCompile(`(?m)^\s*service\s*=\s*"([^"]+)"`).FindStringSubmatch(src)
	}
	if m != nil && !strings.Contains(src, `service "`+m[1]+`"`) {
		attempts = append(attempts, src+static+"service \""+m[1]+"\" { discovery = discovery.static.doc_example }\n")
	}
	attempts = append(attempts, static+"service \"doc_example\" {\n  discovery = discovery.static.doc_example\n"+src+"\n}\n")
	var first hcl.Diagnostics
	for i, attempt := range attempts {
		_, diags := NewLoader().LoadSources(map[string][]byte{"example.hcl": []byte(attempt)})
		var errs hcl.Diagnostics
		for _, d := range diags {
			if d.Severity == hcl.DiagError && d.Summary != "Unusable TLS file" {
				errs = append(errs, d)
			}
		}
		if len(errs) == 0 {
			return nil
		}
		if i == 0 {
			first = errs
		}
	}
	return first
}
