package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/peervault/pvlb/pkg/config"
	"github.com/peervault/pvlb/pkg/invoke"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/rpc"
	"github.com/peervault/pvlb/pkg/service"
	"github.com/peervault/pvlb/pkg/statuscode"
)

// callFlags say what invoke and load call, and how.
type callFlags struct {
	Method     string        `arg:"" help:"Method to call: /package.Service/Method."`
	Service    string        `short:"s" help:"Service (from the configuration) to send through. Needed only when there are several."`
	Data       string        `short:"d" placeholder:"JSON" help:"Request as JSON; @FILE reads a file, @- standard input. Default: {}."`
	Header     []string      `short:"H" sep:"none" placeholder:"KEY:VALUE" help:"Request metadata. Repeatable."`
	Session    string        `placeholder:"ID" help:"Session id for the call: a sticky session's, or the key of a ring_hash or maglev strategy."`
	Timeout    time.Duration `default:"10s" help:"Deadline of each call, retries included."`
	Proto      []string      `placeholder:"FILE" help:"Resolve types from these .proto files instead of server reflection; named from the working directory or from an -I directory."`
	ImportPath []string      `short:"I" type:"existingdir" placeholder:"DIR" help:"Where --proto files and their imports are found."`
}

// InvokeCmd sends a real RPC through the balancer.
type InvokeCmd struct {
	callFlags `embed:""`
	Count     int    `short:"n" default:"1" help:"Send the call this many times and show who served them."`
	Verbose   bool   `short:"v" help:"Show the endpoint, the attempts and the latency of each call."`
	Output    string `short:"o" default:"text" enum:"text,json" help:"Output format: ${enum}. JSON holds the answers (of one call), and per server the calls, failures and latency."`
}

// Help is shown by pvlb invoke --help.
func (c *InvokeCmd) Help() string {
	return `Sends a real call through the configured service's balancer (the same
strategy, health checks, retries and failover as the Go library) and prints
the answer as JSON. Request and response types come from server reflection,
or from --proto files. Server-streaming methods print each message; a
client-streaming or bidirectional method takes any number of JSON requests
one after another (in -d, a file or standard input), as grpcurl does, and
a bidirectional one prints each answer as it comes.

Before the first call pvlb checks every endpoint once with grpc.health.v1,
so that the balancer starts from what is true now.

Examples:
  pvlb invoke -c examples/basic.hcl /peervault.PeerVaultService/HealthCheck
  pvlb invoke -c examples/basic.hcl /peervault.PeerVaultService/GetUserData -d '{"user_id":"u1"}'
  pvlb invoke -c examples/basic.hcl /peervault.PeerVaultService/GetUserData -d @req.json --count 300
  pvlb invoke -c examples/sticky.hcl /peervault.PeerVaultService/GetUserData -d '{"user_id":"u1"}' --session alice -v`
}

// startedCall is a service ready to call, and what to call it with.
type startedCall struct {
	svc      *service.Service
	cfg      *config.Service
	method   protoreflect.MethodDescriptor
	requests []proto.Message
	ctx      context.Context // with the metadata and session to send
}

// start loads the configuration, starts the service (checking every
// endpoint once; oneShot leaves the checks there, else they go on at the
// policy's interval; with meter, recording metrics), finds the method and
// builds the requests. The caller closes the service.
func (c *callFlags) start(a *app, oneShot bool, meter metric.MeterProvider) (_ *startedCall, err error) {
	body, err := readData(c.Data)
	if err != nil {
		return nil, err
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, err
	}
	svcCfg, err := pickService(cfg, c.Service)
	if err != nil {
		return nil, err
	}
	hashes := svcCfg.Strategy.Kind == lb.RingHash || svcCfg.Strategy.Kind == lb.Maglev
	if c.Session != "" && !svcCfg.Strategy.Sticky.Enabled && !hashes {
		return nil, userErrorf("--session needs sticky sessions or a hashing strategy (ring_hash, maglev), but strategy %q of service %q is %s without a sticky_session block", svcCfg.Strategy.Name, svcCfg.Name, svcCfg.Strategy.Kind)
	}
	svc, err := service.New(a.ctx, svcCfg, service.Options{Logger: a.log, HealthChecks: true, OneShot: oneShot, Host: a.pluginHost(cfg), Config: cfg, Meter: meter})
	if err != nil {
		return nil, userError{err}
	}
	defer func() {
		if err != nil {
			svc.Close()
		}
	}()
	svc.Health.ForceHealthCheckAll(a.ctx)
	if err := requireHealthy(svc); err != nil {
		return nil, err
	}
	md, err := c.resolve(a.ctx, svc)
	if err != nil {
		return nil, err
	}
	reqs, err := invoke.NewRequests(md, body)
	if err != nil {
		return nil, userError{err}
	}
	ctx, err := c.outgoing(a.ctx)
	if err != nil {
		return nil, err
	}
	return &startedCall{svc: svc, cfg: svcCfg, method: md, requests: reqs, ctx: ctx}, nil
}

// Run invokes.
func (c *InvokeCmd) Run(a *app) error {
	if c.Count < 1 {
		return userErrorf("--count must be at least 1, not %d", c.Count)
	}
	call, err := c.start(a, true, nil)
	if err != nil {
		return err
	}
	defer call.svc.Close()
	svc, md, reqs, ctx := call.svc, call.method, call.requests, call.ctx

	tally := newTally()
	var responses []json.RawMessage
	var lastErr error
	for i := range c.Count {
		if ctx.Err() != nil {
			return ctx.Err() // interrupted: stop calling, print nothing more
		}
		report := &rpc.CallReport{}
		callCtx, cancel := context.WithTimeout(ctx, c.Timeout)
		start := time.Now()
		err := invoke.Call(callCtx, svc.Client, md, reqs, func(m proto.Message) error {
			if c.Count > 1 {
				return nil
			}
			if c.Output == "json" {
				b, err := invoke.FormatJSON(m)
				responses = append(responses, b)
				return err
			}
			return printMessage(a.stdout, m)
		}, report)
		cancel()
		took := time.Since(start)
		if c.Verbose {
			describeCall(a.stderr, i+1, report, took, err)
		}
		tally.add(report, took, err)
		if err != nil {
			lastErr = err
		}
	}
	if c.Output == "json" {
		out := tally.result(svc, c.Method)
		out.Responses = responses
		if lastErr != nil {
			out.Error = describeRPCError(lastErr, c.Timeout).Error()
		}
		if err := writeJSON(a.stdout, out); err != nil {
			return err
		}
	} else if c.Count > 1 {
		tally.write(a.stdout, svc)
	}
	if lastErr != nil {
		return userError{describeRPCError(lastErr, c.Timeout)}
	}
	return nil
}

// readData reads -d: inline JSON, @FILE or @- for standard input.
func readData(d string) ([]byte, error) {
	switch {
	case d == "@-":
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return nil, userErrorf("-d @-: %v", err)
		}
		return b, nil
	case strings.HasPrefix(d, "@"):
		b, err := os.ReadFile(d[1:])
		if err != nil {
			return nil, userErrorf("-d %s: %v", d, err)
		}
		return b, nil
	}
	return []byte(d), nil
}

// requireHealthy fails with every endpoint's reason when none can serve.
func requireHealthy(svc *service.Service) error {
	stats := svc.Health.GetHealthStats()
	if stats.HealthyServers > 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "no healthy servers for service %q:", svc.Name)
	for _, s := range stats.Servers {
		fmt.Fprintf(&b, "\n  %s (%s): %s", s.ID, s.Address, s.Error)
	}
	return userErrorf("%s", b.String())
}

func (c *callFlags) resolve(ctx context.Context, svc *service.Service) (protoreflect.MethodDescriptor, error) {
	var r invoke.Resolver
	if len(c.Proto) > 0 {
		fr, err := invoke.NewProtoFileResolver(ctx, c.Proto, c.ImportPath)
		if err != nil {
			return nil, userError{err}
		}
		r = fr
	} else {
		rr := invoke.NewReflectionResolver(ctx, svc.Client)
		defer rr.Close()
		r = rr
	}
	md, err := invoke.FindMethod(r, c.Method)
	if err != nil {
		if status.Code(errors.Unwrap(err)) == codes.Unimplemented || strings.Contains(err.Error(), "Unimplemented") {
			return nil, userErrorf("the server does not offer reflection; pass the service's .proto files with --proto: %v", err)
		}
		return nil, userError{err}
	}
	return md, nil
}

// outgoing adds -H metadata and --session to the context.
func (c *callFlags) outgoing(ctx context.Context) (context.Context, error) {
	var pairs []string
	for _, h := range c.Header {
		k, v, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, userErrorf("-H %q: write KEY:VALUE, like -H 'x-request-id: 42'", h)
		}
		pairs = append(pairs, strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v))
	}
	if len(pairs) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, pairs...)
	}
	if c.Session != "" {
		ctx = lb.WithSession(ctx, c.Session)
	}
	return ctx, nil
}

func printMessage(w io.Writer, m proto.Message) error {
	b, err := invoke.FormatJSON(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func describeCall(w io.Writer, n int, r *rpc.CallReport, total time.Duration, err error) {
	outcome, where := "OK", "served by"
	if err != nil {
		outcome, where = statuscode.Code(status.Code(err)).String(), "last attempt failed at"
	}
	server := "-"
	if k := len(r.Attempts); k > 0 {
		server = fmt.Sprintf("%s (%s)", r.Attempts[k-1].Server, r.Attempts[k-1].Address)
	}
	fmt.Fprintf(w, "call %d: %s, %s %s, %s, %s\n", n, outcome, where, server, plural(len(r.Attempts), "attempt", "attempts"), total.Round(time.Microsecond))
	for i, at := range r.Attempts {
		res := "OK"
		if at.Err != nil {
			res = statuscode.Code(status.Code(at.Err)).String() + ": " + status.Convert(at.Err).Message()
		}
		kind := "attempt"
		if at.Hedge {
			kind = "hedge"
		}
		fmt.Fprintf(w, "  %s %d: %s (%s) %s: %s\n", kind, i+1, at.Server, at.Address, at.Latency.Round(time.Microsecond), res)
	}
	if err != nil && r.NotRetried != "" {
		fmt.Fprintf(w, "  not retried: %s\n", r.NotRetried)
	}
}

// tally counts calls by the endpoint of their last attempt: where a call
// was served, or where it last failed.
type tally struct {
	calls, failed map[string]int
	latency       map[string][]time.Duration
	all           []time.Duration // of calls that succeeded
	unplaced      int             // failed before any attempt (no endpoint)
	total, errors int
}

func newTally() *tally {
	return &tally{calls: map[string]int{}, failed: map[string]int{}, latency: map[string][]time.Duration{}}
}

func (t *tally) add(r *rpc.CallReport, took time.Duration, err error) {
	t.total++
	if err != nil {
		t.errors++
	}
	k := len(r.Attempts)
	if k == 0 {
		t.unplaced++
		return
	}
	id := r.Attempts[k-1].Server
	t.calls[id]++
	if err != nil {
		t.failed[id]++
		return
	}
	t.latency[id] = append(t.latency[id], took)
	t.all = append(t.all, took)
}

// quantile of sorted durations (nearest rank), or 0 for none.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

func ms(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) + "ms"
}

func (t *tally) write(w io.Writer, svc *service.Service) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER\tADDRESS\tCALLS\tSHARE\tFAILED\tP50\tP99")
	for _, e := range svc.Balancer.Endpoints() {
		lat := t.latency[e.ID]
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%s\n", e.ID, e.Address, t.calls[e.ID], pct(float64(t.calls[e.ID])/float64(t.total)), t.failed[e.ID], ms(quantile(lat, 0.5)), ms(quantile(lat, 0.99)))
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "%d calls, %d failed", t.total, t.errors)
	if t.unplaced > 0 {
		fmt.Fprintf(w, " (%d before reaching any server)", t.unplaced)
	}
	fmt.Fprintf(w, "; latency p50 %s  p90 %s  p99 %s  max %s (calls that succeeded, retries included)\n",
		ms(quantile(t.all, 0.5)), ms(quantile(t.all, 0.9)), ms(quantile(t.all, 0.99)), ms(quantile(t.all, 1)))
}

type invokeServer struct {
	ID      string  `json:"id"`
	Address string  `json:"address"`
	Calls   int     `json:"calls"`
	Failed  int     `json:"failed"`
	Share   float64 `json:"share"`
	P50MS   float64 `json:"p50_ms"`
	P99MS   float64 `json:"p99_ms"`
}

type invokeResult struct {
	Method    string            `json:"method"`
	Calls     int               `json:"calls"`
	Failed    int               `json:"failed"`
	P50MS     float64           `json:"p50_ms"`
	P90MS     float64           `json:"p90_ms"`
	P99MS     float64           `json:"p99_ms"`
	Servers   []invokeServer    `json:"servers"`
	Responses []json.RawMessage `json:"responses,omitempty"`
	Error     string            `json:"error,omitempty"`
}

func (t *tally) result(svc *service.Service, method string) invokeResult {
	f := func(d time.Duration) float64 { return float64(d) / 1e6 }
	out := invokeResult{Method: method, Calls: t.total, Failed: t.errors,
		P50MS: f(quantile(t.all, 0.5)), P90MS: f(quantile(t.all, 0.9)), P99MS: f(quantile(t.all, 0.99)), Servers: []invokeServer{}}
	for _, e := range svc.Balancer.Endpoints() {
		lat := t.latency[e.ID]
		out.Servers = append(out.Servers, invokeServer{ID: e.ID, Address: e.Address, Calls: t.calls[e.ID], Failed: t.failed[e.ID],
			Share: float64(t.calls[e.ID]) / float64(t.total), P50MS: f(quantile(lat, 0.5)), P99MS: f(quantile(lat, 0.99))})
	}
	return out
}

// describeRPCError turns a call's error into one line a user can act on.
func describeRPCError(err error, timeout time.Duration) error {
	if errors.Is(err, lb.ErrNoHealthyServers) {
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	if st.Code() == codes.DeadlineExceeded {
		return fmt.Errorf("DEADLINE_EXCEEDED: no answer within --timeout %s: %s", timeout, st.Message())
	}
	return fmt.Errorf("%s: %s", statuscode.Code(st.Code()).String(), st.Message())
}
