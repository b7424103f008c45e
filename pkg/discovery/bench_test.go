package discovery_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/peervault/pvlb/pkg/discovery"
)

// BenchmarkPluginStart measures starting the example file plugin as a real
// process: exec, go-plugin handshake with AutoMTLS, Configure, and the
// first Resolve loaded into a LoadBalancer.
func BenchmarkPluginStart(b *testing.B) {
	path := filepath.Join(b.TempDir(), "endpoints.json")
	writeEndpoints(b, path, 50051, 50052, 50053)
	host := discovery.NewHost(&discovery.Finder{Dirs: []string{pluginDir}}, nil)
	defer host.Close()
	for b.Loop() {
		src, err := host.Follow(context.Background(), "file", "", fileSettings(path), "peervault", newLB(b))
		if err != nil {
			b.Fatal(err)
		}
		src.Close()
	}
}

// BenchmarkWatchUpdate measures one change of the file reaching the
// picker: the plugin's fsnotify event, its Watch snapshot over gRPC, the
// LoadBalancer's Sync and a pick that sees the new endpoint.
func BenchmarkWatchUpdate(b *testing.B) {
	path := filepath.Join(b.TempDir(), "endpoints.json")
	writeEndpoints(b, path, 50051)
	balancer := newLB(b)
	host := discovery.NewHost(&discovery.Finder{Dirs: []string{pluginDir}}, nil)
	defer host.Close()
	src, err := host.Follow(context.Background(), "file", "", fileSettings(path), "peervault", balancer)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	port := 50051
	for b.Loop() {
		port++
		writeEndpoints(b, path, port)
		deadline := time.Now().Add(5 * time.Second)
		for {
			e, err := balancer.Pick(context.Background())
			if err == nil {
				balancer.Release(e)
				if e.Port == port {
					break
				}
			}
			if time.Now().After(deadline) {
				b.Fatal("the update did not arrive")
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
}
