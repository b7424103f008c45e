package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hclparse"
)

var hclFence = regexp.MustCompile("(?s)```hcl\n(.*?)```")

// TestDocsExamples keeps the HCL in the README and the docs true: every
// example parses, and every one that declares a service loads without an
// error.
func TestDocsExamples(t *testing.T) {
	docs, _ := filepath.Glob("../../docs/*.md")
	providers, _ := filepath.Glob("../../docs/providers/*.md")
	docs = append(append(docs, providers...), "../../README.md")
	t.Setenv("CONSUL_TOKEN", "doc-example") // examples read it with env()
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
			if !regexp.MustCompile(`(?m)^service "`).MatchString(src) || strings.Contains(src, `discovery "static"`) == false && !strings.Contains(src, "discovery.static.") {
				continue // a fragment, or a service whose discovery needs a plugin
			}
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "example.hcl"), []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, diags := Load(filepath.Join(dir, "example.hcl")); diags.HasErrors() {
				t.Errorf("%s: example does not load:\n%s\n%v", name, src, errorsOf(diags))
			}
		}
	}
	if checked < 5 {
		t.Fatalf("only %d HCL examples found in the docs", checked)
	}
}
