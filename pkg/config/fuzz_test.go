package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// FuzzLoad feeds arbitrary bytes to the loader: it must return
// diagnostics, never panic, and every error must carry a usable range.
//
//	go test -fuzz FuzzLoad -fuzztime 3m ./pkg/config
func FuzzLoad(f *testing.F) {
	for _, pattern := range []string{"*.hcl", "invalid/*.hcl"} {
		files, _ := filepath.Glob(filepath.Join(examples, pattern))
		for _, name := range files {
			src, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(src)
		}
	}
	f.Add([]byte(`service "s" { discovery = discovery.static.x.y[0] }`))
	f.Add([]byte(`strategy "s" { kind = env("HOME", "x", "y") }`))
	f.Add([]byte("x = " + strings.Repeat("[", MaxNesting+5)))
	f.Add([]byte(`x = "` + strings.Repeat("${(", 60)))
	f.Add([]byte("x = <<EOF\n" + strings.Repeat("{", 200) + "\nEOF\n"))
	f.Add([]byte("s \"\x1b[31m\" {\x00}"))
	f.Add([]byte{0xff, 0xfe, '[', '['})
	f.Fuzz(func(t *testing.T, src []byte) {
		done := make(chan struct{})
		var cfg *Config
		var diags hcl.Diagnostics
		go func() {
			defer close(done)
			cfg, diags = NewLoader().LoadSources(map[string][]byte{"fuzz.hcl": src})
		}()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Fatalf("loading took over 2s")
		}
		if !diags.HasErrors() && cfg == nil {
			t.Fatal("no errors and no configuration")
		}
		for _, d := range diags {
			if d.Summary == "" {
				t.Fatalf("diagnostic without summary: %#v", d)
			}
			if r := d.Subject; r != nil && (r.Start.Line < 1 || r.Start.Byte > len(src) || r.End.Byte < r.Start.Byte) {
				t.Fatalf("diagnostic %q has a bad range %v for %d bytes", d.Summary, r, len(src))
			}
		}
		if cfg != nil && !diags.HasErrors() {
			for _, s := range cfg.Services {
				if s.Discovery == nil || s.Strategy == nil || s.Health == nil {
					t.Fatalf("valid service %q with a nil reference", s.Name)
				}
			}
		}
	})
}
