package static

import (
	"context"
	"strings"
	"testing"

	"github.com/peervault/pvlb/pkg/pluginapi"
)

func TestConfigureAndResolve(t *testing.T) {
	p := &Provider{}
	err := p.Configure(context.Background(), pluginapi.NewSettings([]byte(`{"endpoint":{
		"b":{"address":"[::1]:50052","weight":2,"zone":"z","metadata":{"k":"v"}},
		"a":{"address":"127.0.0.1:50051","weight":null,"zone":null,"metadata":null,"simulate":{"latency":"5ms"}}}}`)))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := p.Resolve(context.Background(), "any")
	if len(got) != 2 || got[0].ID != "a" || got[0].Weight != 1 || got[1].Address != "::1" || got[1].Port != 50052 || got[1].Weight != 2 || got[1].Zone != "z" || got[1].Metadata["k"] != "v" {
		t.Fatalf("resolved %+v", got)
	}
	for in, want := range map[string]string{
		`{}`:                                    "lists no endpoint",
		`{"endpoint":{"a":{"address":"nope"}}}`: `endpoint "a": address "nope" is not host:port`,
		`{"endpoint":{"a":{"address":"h:1","weight":0}}}`:   `weight 0 is not a whole number`,
		`{"endpoint":{"a":{"address":"h:1","weight":1.5}}}`: `weight 1.5`,
	} {
		if err := (&Provider{}).Configure(context.Background(), pluginapi.NewSettings([]byte(in))); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", in, err, want)
		}
	}
}
