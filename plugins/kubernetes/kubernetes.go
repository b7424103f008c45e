// Package kubernetes is the bundled discovery provider for Kubernetes
// Services: discovery "kubernetes" "NAME" { service = "peervault" }. Its
// source of truth is the Service's EndpointSlices, followed with a shared
// informer, so pvlb sees what kube-proxy sees: ready, serving and
// terminating endpoints, zones and topology hints.
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/informers"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/peervault/pvlb/pkg/pluginapi"
	"github.com/peervault/pvlb/plugins/internal/providerkit"
)

// ServiceNameLabel links an EndpointSlice to its Service.
const ServiceNameLabel = discoveryv1.LabelServiceName

// Provider follows EndpointSlices in one namespace.
type Provider struct {
	mu     sync.Mutex
	client k8s.Interface
	cfg    settings
	// newClient is replaced in tests with a fake clientset.
	newClient func(*rest.Config) (k8s.Interface, error)
}

type settings struct {
	Kubeconfig    *string `json:"kubeconfig"`
	Context       *string `json:"context"`
	Namespace     *string `json:"namespace"`
	Service       *string `json:"service"`
	Port          *string `json:"port"`
	LabelSelector *string `json:"label_selector"`
	ResyncPeriod  *string `json:"resync_period"`
	AddressType   *string `json:"address_type"`
	Timeout       *string `json:"timeout"`

	namespace   string
	resync      time.Duration
	timeout     time.Duration
	addressType discoveryv1.AddressType
}

// Schema describes the kubernetes block.
func (p *Provider) Schema() pluginapi.Schema {
	str := func(name, desc string) pluginapi.Attribute {
		return pluginapi.Attribute{Name: name, Type: pluginapi.String, Description: desc}
	}
	return pluginapi.Schema{Attributes: []pluginapi.Attribute{
		str("kubeconfig", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster)"),
		str("context", "kubeconfig context (default: the current one)"),
		str("namespace", "namespace (default: the context's, or the pod's)"),
		str("service", "Kubernetes Service name (default: the pvlb service's name)"),
		str("port", "port name or number; needed when the Service has several"),
		str("label_selector", "select EndpointSlices by labels instead of a Service name"),
		str("resync_period", "informer resync (default 10m)"),
		str("address_type", "IPv4 (default) or IPv6, for dual-stack Services"),
		str("timeout", "bound on the first list (default 10s)"),
	}}
}

// restConfig follows kubectl's rules: an explicit kubeconfig, else
// $KUBECONFIG and ~/.kube/config, else the in-cluster service account.
func (s *settings) restConfig() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if f := providerkit.String(s.Kubeconfig); f != "" {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("kubeconfig: %w", err)
		}
		rules.ExplicitPath = f
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: providerkit.String(s.Context)}
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
	cfg, err := loader.ClientConfig()
	if err != nil {
		if providerkit.String(s.Kubeconfig) == "" && clientcmd.IsEmptyConfig(err) {
			in, ierr := rest.InClusterConfig()
			if ierr != nil {
				return nil, fmt.Errorf("no kubeconfig found ($KUBECONFIG, ~/.kube/config) and not running in a cluster: %w", ierr)
			}
			cfg = in
		} else {
			return nil, fmt.Errorf("kubeconfig: %w", err)
		}
	}
	s.namespace = providerkit.String(s.Namespace)
	if s.namespace == "" {
		if ns, _, err := loader.Namespace(); err == nil && ns != "" {
			s.namespace = ns
		} else if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
			s.namespace = strings.TrimSpace(string(b))
		} else {
			s.namespace = metav1.NamespaceDefault
		}
	}
	return cfg, nil
}

func (s *settings) check() error {
	var problems []error
	var err error
	if s.resync, err = pluginapi.Duration("resync_period", providerkit.String(s.ResyncPeriod), 10*time.Minute); err != nil {
		problems = append(problems, err)
	}
	if s.timeout, err = pluginapi.Duration("timeout", providerkit.String(s.Timeout), 10*time.Second); err != nil {
		problems = append(problems, err)
	}
	switch t := providerkit.String(s.AddressType); t {
	case "", "IPv4", "ipv4":
		s.addressType = discoveryv1.AddressTypeIPv4
	case "IPv6", "ipv6":
		s.addressType = discoveryv1.AddressTypeIPv6
	default:
		problems = append(problems, pluginapi.Invalid("address_type", "%q is not \"IPv4\" or \"IPv6\"", t))
	}
	if providerkit.String(s.Service) != "" && providerkit.String(s.LabelSelector) != "" {
		problems = append(problems, pluginapi.Invalid("label_selector", "set service or label_selector, not both"))
	}
	if sel := providerkit.String(s.LabelSelector); sel != "" {
		if _, err := labels.Parse(sel); err != nil {
			problems = append(problems, pluginapi.Invalid("label_selector", "%v", err))
		}
	}
	if ns := providerkit.String(s.Namespace); ns != "" {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			problems = append(problems, pluginapi.Invalid("namespace", "%q is not a namespace name: %s", ns, strings.Join(msgs, "; ")))
		}
	}
	if svc := providerkit.String(s.Service); svc != "" {
		if msgs := validation.IsDNS1035Label(svc); len(msgs) > 0 {
			problems = append(problems, pluginapi.Invalid("service", "%q is not a Service name: %s", svc, strings.Join(msgs, "; ")))
		}
	}
	if f := providerkit.String(s.Kubeconfig); f != "" {
		if kc, err := clientcmd.LoadFromFile(f); err != nil {
			problems = append(problems, pluginapi.Invalid("kubeconfig", "%v", err))
		} else if c := providerkit.String(s.Context); c != "" && kc.Contexts[c] == nil {
			problems = append(problems, pluginapi.Invalid("context", "%s has no context %q", f, c))
		}
	}
	return errors.Join(problems...)
}

// Validate checks the settings without connecting: what Configure would
// refuse before it asks the API server anything.
func (p *Provider) Validate(s pluginapi.Settings) []pluginapi.Problem {
	var cfg settings
	if err := s.Decode(&cfg); err != nil {
		return pluginapi.Problems(err)
	}
	return pluginapi.Problems(cfg.check())
}

// Configure connects and checks that the EndpointSlices can be listed.
func (p *Provider) Configure(ctx context.Context, s pluginapi.Settings) error {
	var cfg settings
	if err := s.Decode(&cfg); err != nil {
		return err
	}
	if err := cfg.check(); err != nil {
		return err
	}
	rc, err := cfg.restConfig()
	if err != nil {
		return err
	}
	rc.Timeout = cfg.timeout
	newClient := p.newClient
	if newClient == nil {
		newClient = func(c *rest.Config) (k8s.Interface, error) { return k8s.NewForConfig(c) }
	}
	client, err := newClient(rc)
	if err != nil {
		return fmt.Errorf("kubernetes: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	if _, err := client.DiscoveryV1().EndpointSlices(cfg.namespace).List(cctx, metav1.ListOptions{Limit: 1}); err != nil {
		return describe(err, cfg.namespace)
	}
	p.mu.Lock()
	p.client, p.cfg = client, cfg
	p.mu.Unlock()
	return nil
}

// describe makes RBAC and reachability failures say what is missing.
func describe(err error, namespace string) error {
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("kubernetes: permission denied: the account may not list endpointslices.discovery.k8s.io in namespace %q; grant get, list and watch on them (see docs/providers/kubernetes.md): %v", namespace, err)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("kubernetes: the API server rejected the credentials: %v", err)
	}
	return fmt.Errorf("kubernetes: %w", err)
}

func (p *Provider) state() (k8s.Interface, settings, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client == nil {
		return nil, settings{}, errors.New("not configured")
	}
	return p.client, p.cfg, nil
}

func (s settings) selector(service string) string {
	if sel := providerkit.String(s.LabelSelector); sel != "" {
		return sel
	}
	name := providerkit.String(s.Service)
	if name == "" {
		name = service
	}
	return ServiceNameLabel + "=" + name
}

// Resolve lists the service's EndpointSlices now.
func (p *Provider) Resolve(ctx context.Context, service string) ([]pluginapi.ServiceInstance, error) {
	client, cfg, err := p.state()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	list, err := client.DiscoveryV1().EndpointSlices(cfg.namespace).List(ctx, metav1.ListOptions{LabelSelector: cfg.selector(service)})
	if err != nil {
		return nil, describe(err, cfg.namespace)
	}
	slicesPtr := make([]*discoveryv1.EndpointSlice, len(list.Items))
	for i := range list.Items {
		slicesPtr[i] = &list.Items[i]
	}
	return cfg.instances(slicesPtr)
}

// Watch follows the EndpointSlices with a shared informer: client-go's
// reflector lists, then watches, and lists again when a watch breaks (an
// API server restart, an expired resource version), so the state
// converges without help. A permission error ends the watch with a clear
// error; the host retries.
func (p *Provider) Watch(ctx context.Context, service string, updates chan<- []pluginapi.ServiceInstance) error {
	client, cfg, err := p.state()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	factory := informers.NewSharedInformerFactoryWithOptions(client, cfg.resync,
		informers.WithNamespace(cfg.namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = cfg.selector(service) }))
	informer := factory.Discovery().V1().EndpointSlices()
	changed := make(chan struct{}, 1)
	notify := func(any) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	if _, err := informer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    notify,
		UpdateFunc: func(_, n any) { notify(n) },
		DeleteFunc: notify,
	}); err != nil {
		return err
	}
	watchErr := make(chan error, 1)
	_ = informer.Informer().SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
			select {
			case watchErr <- describe(err, cfg.namespace):
			default:
			}
		}
	})
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), informer.Informer().HasSynced) {
		select {
		case err := <-watchErr:
			return err
		default:
			return nil
		}
	}
	var last []pluginapi.ServiceInstance
	notify(nil) // the first snapshot, at once
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-watchErr:
			return err
		case <-changed:
		}
		sel, _ := labels.Parse(cfg.selector(service))
		items, err := informer.Lister().EndpointSlices(cfg.namespace).List(sel)
		if err != nil {
			return err
		}
		current, err := cfg.instances(items)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kubernetes: %v\n", err)
			continue
		}
		if last != nil && slices.EqualFunc(current, last, same) {
			continue
		}
		last = current
		if !pluginapi.Send(ctx, updates, current) {
			return nil
		}
	}
}

func same(a, b pluginapi.ServiceInstance) bool {
	return a.ID == b.ID && a.Address == b.Address && a.Port == b.Port && a.Health == b.Health && a.Zone == b.Zone &&
		a.Metadata["node"] == b.Metadata["node"] && a.Metadata["hints.for-zones"] == b.Metadata["hints.for-zones"]
}

// instances merges every slice's endpoints of the configured address type
// into instances, one per address, de-duplicated across slices (a ready
// copy wins).
func (s settings) instances(items []*discoveryv1.EndpointSlice) ([]pluginapi.ServiceInstance, error) {
	byAddr := map[string]pluginapi.ServiceInstance{}
	for _, sl := range items {
		if sl.AddressType != s.addressType {
			continue
		}
		port, err := s.pickPort(sl)
		if err != nil {
			return nil, err
		}
		if port == 0 {
			continue
		}
		for _, ep := range sl.Endpoints {
			for _, addr := range ep.Addresses {
				in := pluginapi.ServiceInstance{Address: addr, Port: port, Weight: 1, Metadata: map[string]string{"slice": sl.Name}}
				in.ID = addr
				if ep.TargetRef != nil && ep.TargetRef.Name != "" {
					in.ID = ep.TargetRef.Name
					if len(ep.Addresses) > 1 {
						in.ID += "/" + addr
					}
				}
				ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready // nil means ready
				in.Health = pluginapi.HealthUnhealthy
				if ready {
					in.Health = pluginapi.HealthHealthy
				}
				if ep.Conditions.Serving != nil && *ep.Conditions.Serving && !ready {
					in.Metadata["condition"] = "serving-not-ready"
				}
				if ep.Conditions.Terminating != nil && *ep.Conditions.Terminating {
					in.Metadata["terminating"] = "true"
				}
				if ep.Zone != nil {
					in.Zone = *ep.Zone
				}
				if ep.NodeName != nil {
					in.Metadata["node"] = *ep.NodeName
				}
				if ep.Hints != nil && len(ep.Hints.ForZones) > 0 {
					var zones []string
					for _, z := range ep.Hints.ForZones {
						zones = append(zones, z.Name)
					}
					in.Metadata["hints.for-zones"] = strings.Join(zones, ",")
				}
				key := in.HostPort()
				if prev, ok := byAddr[key]; ok && prev.Health == pluginapi.HealthHealthy {
					continue
				}
				byAddr[key] = in
			}
		}
	}
	out := make([]pluginapi.ServiceInstance, 0, len(byAddr))
	for _, in := range byAddr {
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b pluginapi.ServiceInstance) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// pickPort chooses the slice's port by the configured name or number, or
// its only port; 0 when the slice does not carry the configured port.
func (s settings) pickPort(sl *discoveryv1.EndpointSlice) (int, error) {
	want := providerkit.String(s.Port)
	var names []string
	for _, p := range sl.Ports {
		if p.Port == nil {
			continue
		}
		name := providerkit.String(p.Name)
		names = append(names, fmt.Sprintf("%s:%d", name, *p.Port))
		if want != "" && (want == name || want == strconv.Itoa(int(*p.Port))) {
			return int(*p.Port), nil
		}
	}
	if want != "" {
		return 0, nil
	}
	if len(names) == 1 {
		return int(*sl.Ports[0].Port), nil
	}
	if len(names) == 0 {
		return 0, nil
	}
	return 0, fmt.Errorf("EndpointSlice %s has ports %s; set port to a name or number", sl.Name, strings.Join(names, ", "))
}
