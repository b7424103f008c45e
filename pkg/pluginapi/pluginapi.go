// Package pluginapi is the kit for writing a pvlb discovery plugin: a
// program that tells pvlb where a service's servers are. pvlb starts the
// plugin as a separate process and talks to it over gRPC with mutual TLS
// (hashicorp/go-plugin), so a slow or broken plugin cannot take the
// balancer down.
//
// A plugin implements Provider and hands it to Serve:
//
//	func main() {
//		pluginapi.Serve(&myProvider{})
//	}
//
// Build it as an executable named pvlb-discovery-KIND and put it on the
// plugin path; a configuration then uses it as discovery "KIND" "NAME".
// docs/writing-plugins.md walks through one from an empty folder.
package pluginapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/go-plugin"
)

// ProtocolVersion is the plugin protocol this package speaks. pvlb
// negotiates it with go-plugin's versioned handshake, so a later protocol
// can be added beside it.
const ProtocolVersion = 1

// PluginName is the name of the discovery plugin in go-plugin's plugin map.
const PluginName = "discovery"

// ExecutablePrefix starts every discovery plugin executable's name:
// pvlb-discovery-consul provides discovery "consul".
const ExecutablePrefix = "pvlb-discovery-"

// Handshake is what pvlb and a plugin check before talking. The magic
// cookie only keeps a plugin from being run by hand by mistake; it is not
// a security measure (AutoMTLS and checksums are).
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "PVLB_DISCOVERY_PLUGIN",
	MagicCookieValue: "7d5f3c0e-pvlb-discovery",
}

// Provider is what a discovery plugin implements.
type Provider interface {
	// Schema describes the settings of a discovery block of this kind;
	// pvlb decodes and validates the block with it before Configure.
	Schema() Schema
	// Configure receives the block's settings. It returns a clear error
	// for bad settings or a backend it cannot reach.
	Configure(ctx context.Context, settings Settings) error
	// Resolve returns the service's instances now.
	Resolve(ctx context.Context, service string) ([]ServiceInstance, error)
	// Watch sends a full snapshot of the service's instances on updates
	// whenever they change, the first one at once, until ctx ends (return
	// nil then) or the backend fails (return the error; pvlb keeps the
	// last snapshot and calls Watch again later).
	Watch(ctx context.Context, service string, updates chan<- []ServiceInstance) error
}

// Send delivers one snapshot on updates unless ctx ends first; it reports
// whether it was delivered. Watch implementations use it for every send,
// so that they never block past the end of their context.
func Send(ctx context.Context, updates chan<- []ServiceInstance, snapshot []ServiceInstance) bool {
	select {
	case updates <- snapshot:
		return true
	case <-ctx.Done():
		return false
	}
}

// Schema describes a discovery block's body.
type Schema struct {
	Attributes []Attribute
	Blocks     []Block
}

// Attribute is one setting, like `address = "127.0.0.1:8500"`.
type Attribute struct {
	Name     string
	Type     Type
	Required bool
	// Sensitive values (tokens, passwords) are never printed by pvlb.
	Sensitive   bool
	Description string
}

// Type is an attribute's value type.
type Type string

// The attribute types a schema can use.
const (
	String       Type = "string"
	Number       Type = "number"
	Bool         Type = "bool"
	ListOfString Type = "list(string)"
	MapOfString  Type = "map(string)"
)

// Block is a nested block, like `endpoint "server1" { ... }`.
type Block struct {
	Name string
	// Labels name the block's labels; with labels, the block decodes as
	// a JSON object keyed by the label.
	Labels []string
	// Multiple allows the block more than once (a list, or with labels a
	// map); otherwise at most once.
	Multiple    bool
	Required    bool
	Description string
	Schema      Schema
}

// Settings is a discovery block's body, decoded with the Schema, as JSON.
type Settings struct {
	raw json.RawMessage
}

// NewSettings wraps a JSON object as Settings, for tests of a Provider.
func NewSettings(jsonObject []byte) Settings { return Settings{raw: jsonObject} }

// Equal reports whether two Settings hold the same values.
func (s Settings) Equal(o Settings) bool { return bytes.Equal(s.raw, o.raw) }

// Decode unmarshals the settings into v, typically a struct whose fields
// have json tags matching the schema's names. Blocks with labels decode as
// maps keyed by label, repeated blocks as slices, others as objects.
func (s Settings) Decode(v any) error {
	if len(s.raw) == 0 {
		return json.Unmarshal([]byte("{}"), v)
	}
	if err := json.Unmarshal(s.raw, v); err != nil {
		return fmt.Errorf("decode settings: %w", err)
	}
	return nil
}

// Duration parses an optional duration setting such as "30s": def when
// empty, and an error naming the setting when it is not a positive
// duration.
func Duration(name, value string, def time.Duration) (time.Duration, error) {
	if value == "" {
		return def, nil
	}
	d, err := time.ParseDuration(value)
	if err != nil || d <= 0 {
		return 0, Invalid(name, "%q is not a positive duration like \"30s\"", value)
	}
	return d, nil
}

// Validator is a Provider that checks its settings without connecting
// anywhere, for pvlb validate: every value it can judge locally (formats,
// durations, files it will read). pvlb shows each Problem at the setting
// it names. Configure should refuse the same settings, with the same
// words.
type Validator interface {
	Validate(settings Settings) []Problem
}

// Problem is a setting's value a provider refuses.
type Problem struct {
	// Attribute names the setting: "dial_timeout", or "tls.ca_file" for
	// one inside a block; empty for the block as a whole.
	Attribute string
	Detail    string
}

func (p *Problem) Error() string {
	if p.Attribute == "" {
		return p.Detail
	}
	return p.Attribute + ": " + p.Detail
}

// Invalid returns a *Problem with the setting's name, as an error.
func Invalid(attribute, format string, args ...any) error {
	return &Problem{Attribute: attribute, Detail: fmt.Sprintf(format, args...)}
}

// Problems turns an error from checking settings into Problems: each
// *Problem it holds (errors.Join may hold several) keeps its setting; any
// other error is about the block as a whole. Nil gives none.
func Problems(err error) []Problem {
	if err == nil {
		return nil
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var out []Problem
		for _, e := range joined.Unwrap() {
			out = append(out, Problems(e)...)
		}
		return out
	}
	var p *Problem
	if errors.As(err, &p) {
		return []Problem{*p}
	}
	return []Problem{{Detail: err.Error()}}
}

// JSON returns the settings as a JSON object.
func (s Settings) JSON() []byte { return s.raw }

// ServiceInstance is one server of a service, as a provider reports it.
type ServiceInstance struct {
	ID      string
	Address string // a host name or IP address, without the port
	Port    int
	Weight  int // 0 means 1
	Health  Health
	Zone    string
	// Metadata is free-form, such as Consul's service meta or
	// Kubernetes labels.
	Metadata map[string]string
}

// HostPort returns "address:port" ("[::1]:50051" for IPv6).
func (i ServiceInstance) HostPort() string {
	return net.JoinHostPort(i.Address, strconv.Itoa(i.Port))
}

// Health is what a provider knows of an instance's health.
type Health int

const (
	// HealthUnknown: the provider does not know (a static list).
	HealthUnknown Health = iota
	// HealthHealthy: the backend reports it passing its checks.
	HealthHealthy
	// HealthUnhealthy: the backend reports it failing.
	HealthUnhealthy
)

func (h Health) String() string {
	switch h {
	case HealthHealthy:
		return "healthy"
	case HealthUnhealthy:
		return "unhealthy"
	}
	return "unknown"
}
