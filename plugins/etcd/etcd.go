// Package etcd is the bundled discovery provider for services registered
// in etcd: discovery "etcd" "NAME" { endpoints = [...] }. It reads the
// layout that etcd's own naming/endpoints Manager writes, or pvlb's own
// JSON records, and follows changes with an etcd watch.
package etcd

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/peervault/pvlb/pkg/pluginapi"
	"github.com/peervault/pvlb/pkg/tlsfiles"
	"github.com/peervault/pvlb/plugins/internal/providerkit"
)

// Key formats.
const (
	// FormatNaming is the layout of go.etcd.io/etcd/client/v3/naming/endpoints:
	// <prefix><service>/<key> holding {"Addr": "host:port", "Metadata": ...}.
	FormatNaming = "etcd-naming"
	// FormatJSON is pvlb's record per instance: <prefix><service>/<id>
	// holding {"address", "port", "weight", "zone", "health", "metadata"}.
	FormatJSON = "json"
)

// DefaultDialTimeout bounds connecting to etcd when dial_timeout is unset.
const DefaultDialTimeout = 5 * time.Second

// Provider follows one etcd cluster.
type Provider struct {
	mu     sync.Mutex
	client *clientv3.Client
	cfg    settings
}

type settings struct {
	Endpoints    []string         `json:"endpoints"`
	Prefix       *string          `json:"prefix"`
	DialTimeout  *string          `json:"dial_timeout"`
	Username     *string          `json:"username"`
	Password     *string          `json:"password"`
	PasswordFile *string          `json:"password_file"`
	Format       *string          `json:"format"`
	TLS          *providerkit.TLS `json:"tls"`

	prefix      string
	dialTimeout time.Duration
	format      string
}

// Schema describes the etcd block.
func (p *Provider) Schema() pluginapi.Schema {
	return pluginapi.Schema{
		Attributes: []pluginapi.Attribute{
			{Name: "endpoints", Type: pluginapi.ListOfString, Required: true, Description: "etcd client URLs or host:port"},
			{Name: "prefix", Type: pluginapi.String, Description: "key prefix before the service name (default none)"},
			{Name: "dial_timeout", Type: pluginapi.String, Description: "how long to wait for etcd (default 5s)"},
			{Name: "username", Type: pluginapi.String},
			{Name: "password", Type: pluginapi.String, Sensitive: true, Description: "use env(...) or password_file"},
			{Name: "password_file", Type: pluginapi.String, Description: "file holding the password"},
			{Name: "format", Type: pluginapi.String, Description: "etcd-naming (default) or json"},
		},
		Blocks: []pluginapi.Block{providerkit.TLSBlock("TLS to etcd")},
	}
}

func (s *settings) check() (*clientv3.Config, error) {
	var problems []error
	if len(s.Endpoints) == 0 {
		problems = append(problems, pluginapi.Invalid("endpoints", "lists no etcd address; give at least one, like [\"127.0.0.1:2379\"]"))
	}
	for _, e := range s.Endpoints {
		if strings.TrimSpace(e) == "" {
			problems = append(problems, pluginapi.Invalid("endpoints", "holds an empty address"))
			break
		}
	}
	var err error
	if s.dialTimeout, err = pluginapi.Duration("dial_timeout", providerkit.String(s.DialTimeout), DefaultDialTimeout); err != nil {
		problems = append(problems, err)
	}
	s.format = FormatNaming
	if f := providerkit.String(s.Format); f != "" {
		if f != FormatNaming && f != FormatJSON {
			problems = append(problems, pluginapi.Invalid("format", "%q is not %q or %q", f, FormatNaming, FormatJSON))
		}
		s.format = f
	}
	s.prefix = providerkit.String(s.Prefix)
	if s.prefix != "" && !strings.HasSuffix(s.prefix, "/") {
		s.prefix += "/"
	}
	cfg := &clientv3.Config{
		Endpoints:   s.Endpoints,
		DialTimeout: s.dialTimeout,
		Username:    providerkit.String(s.Username),
		Logger:      zap.NewNop(),
		// A dead etcd must not hang a call past the dial timeout.
		DialKeepAliveTime:    s.dialTimeout,
		DialKeepAliveTimeout: s.dialTimeout,
	}
	cfg.Password = providerkit.String(s.Password)
	if f := providerkit.String(s.PasswordFile); f != "" {
		if cfg.Password != "" {
			problems = append(problems, pluginapi.Invalid("password_file", "set password or password_file, not both"))
		} else if b, err := os.ReadFile(f); err != nil {
			problems = append(problems, pluginapi.Invalid("password_file", "%v", err))
		} else {
			cfg.Password = strings.TrimSpace(string(b))
		}
	}
	if cfg.Password != "" && cfg.Username == "" {
		problems = append(problems, pluginapi.Invalid("username", "a password needs a username"))
	}
	if s.TLS != nil {
		t := tlsfiles.Config{CAFile: providerkit.String(s.TLS.CAFile), CertFile: providerkit.String(s.TLS.CertFile), KeyFile: providerkit.String(s.TLS.KeyFile), ServerName: providerkit.String(s.TLS.ServerName)}
		tc, err := t.Load()
		if err != nil {
			problems = append(problems, providerkit.TLSProblem(err))
		}
		cfg.TLS = tc
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	return cfg, nil
}

// Validate checks the settings without connecting: what Configure would
// refuse before it dials.
func (p *Provider) Validate(s pluginapi.Settings) []pluginapi.Problem {
	var cfg settings
	if err := s.Decode(&cfg); err != nil {
		return pluginapi.Problems(err)
	}
	_, err := cfg.check()
	return pluginapi.Problems(err)
}

// Configure connects to etcd and checks that it answers, with the
// credentials given, within dial_timeout.
func (p *Provider) Configure(ctx context.Context, s pluginapi.Settings) error {
	var cfg settings
	if err := s.Decode(&cfg); err != nil {
		return err
	}
	ccfg, err := cfg.check()
	if err != nil {
		return err
	}
	client, err := clientv3.New(*ccfg)
	if err != nil {
		return fmt.Errorf("etcd at %s: %w", strings.Join(cfg.Endpoints, ", "), describe(err))
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.dialTimeout)
	defer cancel()
	if _, err := client.Get(cctx, cfg.prefix+"\x00", clientv3.WithCountOnly()); err != nil {
		client.Close()
		if errors.Is(cctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("etcd at %s did not answer within dial_timeout %s", strings.Join(cfg.Endpoints, ", "), cfg.dialTimeout)
		}
		return fmt.Errorf("etcd at %s: %w", strings.Join(cfg.Endpoints, ", "), describe(err))
	}
	p.mu.Lock()
	old := p.client
	p.client, p.cfg = client, cfg
	p.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// describe names the usual etcd failures plainly.
func describe(err error) error {
	switch {
	case errors.Is(err, rpctypes.ErrAuthFailed):
		return errors.New("authentication failed: wrong username or password")
	case errors.Is(err, rpctypes.ErrPermissionDenied):
		return errors.New("permission denied: the user may not read these keys")
	}
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &certErr) {
		return fmt.Errorf("TLS: %w", certErr)
	}
	return err
}

func (p *Provider) state() (*clientv3.Client, settings, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client == nil {
		return nil, settings{}, errors.New("not configured")
	}
	return p.client, p.cfg, nil
}

// servicePrefix is where a service's instances live.
func (s settings) servicePrefix(service string) string { return s.prefix + service + "/" }

// Resolve reads the service's instances now (a linearizable read).
func (p *Provider) Resolve(ctx context.Context, service string) ([]pluginapi.ServiceInstance, error) {
	client, cfg, err := p.state()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.dialTimeout)
	defer cancel()
	resp, err := client.Get(ctx, cfg.servicePrefix(service), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", describe(err))
	}
	state := map[string]pluginapi.ServiceInstance{}
	for _, kv := range resp.Kvs {
		cfg.put(state, service, kv)
	}
	return snapshot(state), nil
}

// put records one key's instance; a value it cannot read is left out and
// reported on the plugin's log.
func (s settings) put(state map[string]pluginapi.ServiceInstance, service string, kv *mvccpb.KeyValue) {
	id := strings.TrimPrefix(string(kv.Key), s.servicePrefix(service))
	in, err := s.decode(id, kv.Value)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd: skipping key %s: %v\n", kv.Key, err)
		delete(state, id)
		return
	}
	state[id] = in
}

func (s settings) decode(id string, value []byte) (pluginapi.ServiceInstance, error) {
	if s.format == FormatJSON {
		var rec struct {
			ID       string            `json:"id"`
			Address  string            `json:"address"`
			Port     int               `json:"port"`
			Weight   int               `json:"weight"`
			Zone     string            `json:"zone"`
			Health   string            `json:"health"`
			Metadata map[string]string `json:"metadata"`
		}
		if err := json.Unmarshal(value, &rec); err != nil {
			return pluginapi.ServiceInstance{}, fmt.Errorf("not a pvlb JSON record: %w", err)
		}
		if rec.ID != "" {
			id = rec.ID
		}
		in := pluginapi.ServiceInstance{ID: id, Address: rec.Address, Port: rec.Port, Weight: rec.Weight, Zone: rec.Zone, Metadata: rec.Metadata}
		switch rec.Health {
		case "healthy", "passing":
			in.Health = pluginapi.HealthHealthy
		case "unhealthy", "critical":
			in.Health = pluginapi.HealthUnhealthy
		}
		return in, nil
	}
	// etcd's naming/endpoints.Endpoint.
	var ep struct {
		Addr     string
		Metadata any
	}
	if err := json.Unmarshal(value, &ep); err != nil {
		return pluginapi.ServiceInstance{}, fmt.Errorf("not an etcd naming endpoint: %w", err)
	}
	host, portStr, err := net.SplitHostPort(ep.Addr)
	if err != nil {
		return pluginapi.ServiceInstance{}, fmt.Errorf("address %q is not host:port", ep.Addr)
	}
	port, _ := strconv.Atoi(portStr)
	in := pluginapi.ServiceInstance{ID: id, Address: host, Port: port}
	if md, ok := ep.Metadata.(map[string]any); ok {
		in.Metadata = map[string]string{}
		for k, v := range md {
			switch v := v.(type) {
			case string:
				in.Metadata[k] = v
			case float64:
				if k == "weight" {
					in.Weight = int(v)
				}
				in.Metadata[k] = strconv.FormatFloat(v, 'f', -1, 64)
			default:
				b, _ := json.Marshal(v)
				in.Metadata[k] = string(b)
			}
		}
		if z, ok := in.Metadata["zone"]; ok {
			in.Zone = z
		}
	}
	return in, nil
}

func snapshot(state map[string]pluginapi.ServiceInstance) []pluginapi.ServiceInstance {
	out := make([]pluginapi.ServiceInstance, 0, len(state))
	for _, in := range state {
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b pluginapi.ServiceInstance) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Watch sends the instances now, then after every change: an initial Get,
// then an etcd watch from the next revision. A compacted revision means
// events were lost, so it reads everything again; etcd's client reconnects
// by itself and resumes the watch where it stopped.
func (p *Provider) Watch(ctx context.Context, service string, updates chan<- []pluginapi.ServiceInstance) error {
	client, cfg, err := p.state()
	if err != nil {
		return err
	}
	prefix := cfg.servicePrefix(service)
	for {
		gctx, cancel := context.WithTimeout(ctx, cfg.dialTimeout)
		resp, err := client.Get(gctx, prefix, clientv3.WithPrefix())
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("etcd: %w", describe(err))
		}
		state := map[string]pluginapi.ServiceInstance{}
		for _, kv := range resp.Kvs {
			cfg.put(state, service, kv)
		}
		if !pluginapi.Send(ctx, updates, snapshot(state)) {
			return nil
		}
		wctx, cancelWatch := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := client.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
		resync, err := follow(ctx, wch, cfg, service, state, updates)
		cancelWatch()
		if err != nil {
			return err
		}
		if !resync {
			return nil
		}
	}
}

// follow applies watch events until the context ends (false, nil), a
// resync is needed (true, nil) or the watch fails (false, err).
func follow(ctx context.Context, wch clientv3.WatchChan, cfg settings, service string, state map[string]pluginapi.ServiceInstance, updates chan<- []pluginapi.ServiceInstance) (bool, error) {
	for wresp := range wch {
		if err := wresp.Err(); err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) || wresp.CompactRevision != 0 {
				fmt.Fprintf(os.Stderr, "etcd: watch revision compacted (at %d); reading everything again\n", wresp.CompactRevision)
				return true, nil
			}
			if errors.Is(err, rpctypes.ErrNoLeader) {
				return false, errors.New("etcd: the cluster has no leader")
			}
			return false, fmt.Errorf("etcd watch: %w", describe(err))
		}
		for _, ev := range wresp.Events {
			id := strings.TrimPrefix(string(ev.Kv.Key), cfg.servicePrefix(service))
			if ev.Type == clientv3.EventTypeDelete {
				delete(state, id)
			} else {
				cfg.put(state, service, ev.Kv)
			}
		}
		if len(wresp.Events) > 0 && !pluginapi.Send(ctx, updates, snapshot(state)) {
			return false, nil
		}
	}
	if ctx.Err() != nil {
		return false, nil
	}
	return true, nil // the watch channel closed without an error: start over
}

// Close ends the etcd client.
func (p *Provider) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client == nil {
		return nil
	}
	err := p.client.Close()
	p.client = nil
	return err
}
