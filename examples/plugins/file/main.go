// Command pvlb-discovery-file is an example pvlb discovery plugin: it reads
// a service's endpoints from a JSON file and pushes every change to pvlb
// as the file changes. It uses nothing of pvlb but pkg/pluginapi.
//
// Build it onto the plugin path and use it as discovery "file":
//
//	go build -o ~/.pvlb/plugins/pvlb-discovery-file ./examples/plugins/file
//
//	discovery "file" "local" {
//	  path = "endpoints.json"
//	}
//
// where endpoints.json maps service names to instances:
//
//	{"peervault": [{"id": "server1", "address": "127.0.0.1", "port": 50051, "weight": 1}]}
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"

	"github.com/fsnotify/fsnotify"

	"github.com/peervault/pvlb/pkg/pluginapi"
)

func main() {
	pluginapi.Serve(&provider{})
}

type provider struct {
	mu   sync.Mutex
	path string
}

func (p *provider) Schema() pluginapi.Schema {
	return pluginapi.Schema{Attributes: []pluginapi.Attribute{{
		Name:        "path",
		Type:        pluginapi.String,
		Required:    true,
		Description: "JSON file mapping service names to lists of instances",
	}}}
}

// Validate lets pvlb validate read the file too: it is local, and a
// missing or malformed one is a mistake in the configuration.
func (p *provider) Validate(settings pluginapi.Settings) []pluginapi.Problem {
	_, err := check(settings)
	return pluginapi.Problems(err)
}

// check decodes the settings and reads the file once.
func check(settings pluginapi.Settings) (string, error) {
	var cfg struct {
		Path string `json:"path"`
	}
	if err := settings.Decode(&cfg); err != nil {
		return "", err
	}
	abs, err := filepath.Abs(cfg.Path)
	if err != nil {
		return "", pluginapi.Invalid("path", "%v", err)
	}
	if _, err := load(abs); err != nil {
		return "", pluginapi.Invalid("path", "%v", err)
	}
	return abs, nil
}

func (p *provider) Configure(_ context.Context, settings pluginapi.Settings) error {
	abs, err := check(settings)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.path = abs
	p.mu.Unlock()
	return nil
}

// instance is one entry of the file.
type instance struct {
	ID       string            `json:"id"`
	Address  string            `json:"address"`
	Port     int               `json:"port"`
	Weight   int               `json:"weight"`
	Zone     string            `json:"zone"`
	Metadata map[string]string `json:"metadata"`
}

func load(path string) (map[string][]instance, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read endpoints: %w", err)
	}
	var services map[string][]instance
	if err := json.Unmarshal(b, &services); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return services, nil
}

func (p *provider) Resolve(_ context.Context, service string) ([]pluginapi.ServiceInstance, error) {
	p.mu.Lock()
	path := p.path
	p.mu.Unlock()
	if path == "" {
		return nil, errors.New("not configured")
	}
	services, err := load(path)
	if err != nil {
		return nil, err
	}
	list, ok := services[service]
	if !ok {
		return nil, fmt.Errorf("%s lists no service %q", path, service)
	}
	out := make([]pluginapi.ServiceInstance, 0, len(list))
	for _, i := range list {
		out = append(out, pluginapi.ServiceInstance{
			ID: i.ID, Address: i.Address, Port: i.Port, Weight: i.Weight, Zone: i.Zone, Metadata: i.Metadata,
		})
	}
	return out, nil
}

// Watch sends the instances now and after every change of the file. It
// watches the file's directory, because editors often replace a file
// rather than write it in place.
func (p *provider) Watch(ctx context.Context, service string, updates chan<- []pluginapi.ServiceInstance) error {
	p.mu.Lock()
	path := p.path
	p.mu.Unlock()
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(path)); err != nil {
		return err
	}
	var last []pluginapi.ServiceInstance
	send := func() {
		current, err := p.Resolve(ctx, service)
		if err != nil {
			return // a half-written file: wait for the next change
		}
		if last != nil && reflect.DeepEqual(current, last) {
			return
		}
		last = current
		pluginapi.Send(ctx, updates, current)
	}
	if _, err := p.Resolve(ctx, service); err != nil {
		return err
	}
	send()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("file watcher closed")
			}
			if filepath.Clean(ev.Name) == path {
				send()
			}
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("file watcher closed")
			}
			return err
		}
	}
}
