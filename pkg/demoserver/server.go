// Package demoserver is a PeerVault server for trying pvlb against real
// gRPC traffic: it answers with its own name, so a client can see who
// served each call, speaks grpc.health.v1 with a status that can be
// flipped, offers server reflection, and can be slowed down or made to fail
// the way `pvlb simulate` models servers.
package demoserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/orca"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/peervault/pvlb/pkg/latency"
	"github.com/peervault/pvlb/pkg/statuscode"
	pb "github.com/peervault/pvlb/proto/peervault/v1"
)

// ServiceName is the gRPC service the demo server implements.
const ServiceName = "peervault.PeerVaultService"

// Config describes a demo server.
type Config struct {
	// Name is returned in every answer; it identifies the server.
	Name string
	// Latency, when set, delays every answer by a sample of the model.
	Latency *latency.Model
	// ErrorRate is the share of calls that fail with ErrorCode.
	ErrorRate float64
	// ErrorCode is the status of injected failures; zero means INTERNAL.
	ErrorCode statuscode.Code
	// Pushback, when set, is sent with each injected failure as gRFC A6's
	// grpc-retry-pushback-ms trailer: milliseconds to wait before a
	// retry, or a negative number to ask for none.
	Pushback string
	// UnhealthyAfter, when positive, turns health to NOT_SERVING this long
	// after the server starts serving.
	UnhealthyAfter time.Duration
	// Seed makes latency and error injection repeatable; 0 is random.
	Seed uint64
	// Capacity, when positive, is how many calls a second the server
	// answers at full use. The server then reports its load with ORCA, as
	// grpc-go's weighted_round_robin and pvlb's read it: the calls and
	// errors it answered over the last second, and their share of
	// Capacity as its CPU utilization; in every call's trailers and on
	// ORCA's out-of-band service (at most every 30 seconds, grpc-go's
	// floor).
	Capacity float64
}

// Server is a running demo server.
type Server struct {
	pb.UnimplementedPeerVaultServiceServer
	cfg    Config
	log    *slog.Logger
	grpc   *grpc.Server
	health *health.Server
	lis    net.Listener
	calls  atomic.Int64
	// inFlight and peak count the calls being answered, for tests of
	// the client's caps.
	inFlight, peak atomic.Int64

	rmu sync.Mutex
	rng *rand.Rand
	// timer for UnhealthyAfter, stopped on Stop.
	timer *time.Timer
	// load is what the server reports of its load (Capacity), and rate
	// measures it.
	load orca.ServerMetricsRecorder
	rate rateMeter
}

// New returns a demo server; Serve starts it.
func New(cfg Config, logger *slog.Logger, opts ...grpc.ServerOption) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	s := &Server{
		cfg:    cfg,
		log:    logger.With("server", cfg.Name),
		health: health.NewServer(),
		rng:    rand.New(rand.NewPCG(seed, seed^0xdead)),
	}
	// Allow clients' keepalive pings every 10s, grpc-go's smallest, while
	// calls are in flight or not.
	opts = append([]grpc.ServerOption{grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
		MinTime:             10 * time.Second,
		PermitWithoutStream: true,
	})}, opts...)
	if cfg.Capacity > 0 {
		s.load = orca.NewServerMetricsRecorder()
		// First, as the orca package asks: every call's trailers carry
		// the server's load.
		opts = append([]grpc.ServerOption{orca.CallMetricsServerOption(s.load)}, opts...)
	}
	s.grpc = grpc.NewServer(opts...)
	if s.load != nil {
		if err := orca.Register(s.grpc, orca.ServiceOptions{ServerMetricsProvider: s.load}); err != nil {
			panic(err) // only a nil provider fails
		}
	}
	pb.RegisterPeerVaultServiceServer(s.grpc, s)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	s.SetServing(true)
	return s
}

// Start listens on addr (such as "127.0.0.1:0") and serves in the
// background until Stop.
func Start(addr string, cfg Config, logger *slog.Logger, opts ...grpc.ServerOption) (*Server, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("demo server %s: listen on %s: %w", cfg.Name, addr, err)
	}
	s := New(cfg, logger, opts...)
	s.setListener(lis)
	go func() { _ = s.Serve(lis) }()
	return s, nil
}

// Serve serves on lis until Stop; it returns nil after a Stop.
func (s *Server) Serve(lis net.Listener) error {
	s.setListener(lis)
	if s.cfg.UnhealthyAfter > 0 {
		s.rmu.Lock()
		s.timer = time.AfterFunc(s.cfg.UnhealthyAfter, func() { s.SetServing(false) })
		s.rmu.Unlock()
	}
	s.log.Info("serving", "address", lis.Addr().String())
	if err := s.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("demo server %s: %w", s.cfg.Name, err)
	}
	return nil
}

func (s *Server) setListener(lis net.Listener) {
	s.rmu.Lock()
	s.lis = lis
	s.rmu.Unlock()
}

// Addr returns the address the server listens on, once it listens.
func (s *Server) Addr() string {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if s.lis == nil {
		return ""
	}
	return s.lis.Addr().String()
}

// Name returns the server's name.
func (s *Server) Name() string { return s.cfg.Name }

// Calls returns how many PeerVault calls the server has answered.
func (s *Server) Calls() int64 { return s.calls.Load() }

// SetServing sets the grpc.health.v1 status, overall and for ServiceName.
func (s *Server) SetServing(serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(ServiceName, st)
	s.log.Info("health status", "status", st.String())
}

// Serving reports the current health status.
func (s *Server) Serving() bool {
	resp, _ := s.health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: ServiceName})
	return resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
}

// Stop ends the server at once, breaking open connections, as a crash
// would.
func (s *Server) Stop() {
	s.stopTimer()
	s.grpc.Stop()
}

// GracefulStop lets calls in flight finish, then stops.
func (s *Server) GracefulStop() {
	s.stopTimer()
	s.health.Shutdown()
	s.grpc.GracefulStop()
}

func (s *Server) stopTimer() {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if s.timer != nil {
		s.timer.Stop()
	}
}

// behave applies the configured latency and error rate to one call.
func (s *Server) behave(ctx context.Context) error {
	s.calls.Add(1)
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	var failed bool
	if s.load != nil {
		orca.CallMetricsRecorderFromContext(ctx) // the call's trailers carry the report
		defer func() { s.answered(failed) }()
	}
	for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
	}
	s.rmu.Lock()
	var delay time.Duration
	if s.cfg.Latency != nil {
		delay = s.cfg.Latency.Sample(s.rng)
	}
	fail := s.cfg.ErrorRate > 0 && s.rng.Float64() < s.cfg.ErrorRate
	s.rmu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	if fail {
		failed = true
		if s.cfg.Pushback != "" {
			_ = grpc.SetTrailer(ctx, metadata.Pairs("grpc-retry-pushback-ms", s.cfg.Pushback))
		}
		code := codes.Internal
		if s.cfg.ErrorCode != statuscode.OK {
			code = codes.Code(s.cfg.ErrorCode)
		}
		return status.Errorf(code, "%s: injected failure (error rate %g)", s.cfg.Name, s.cfg.ErrorRate)
	}
	return nil
}

// answered counts an answered call and reports the load it makes.
func (s *Server) answered(failed bool) {
	qps, eps := s.rate.add(time.Now(), failed)
	s.load.SetQPS(qps)
	s.load.SetEPS(eps)
	s.load.SetCPUUtilization(qps / s.cfg.Capacity)
}

// rateMeter counts calls and errors over the last second, in ten buckets
// of 100ms.
type rateMeter struct {
	mu      sync.Mutex
	calls   [10]int
	errors  [10]int
	current int64 // the bucket (time in 100ms units) calls[current%10] counts
}

// add counts a call at now and returns the calls and errors a second over
// the last full second of buckets and the current one, prorated.
func (m *rateMeter) add(now time.Time, failed bool) (qps, eps float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	const bucket = 100 * time.Millisecond
	b := now.UnixNano() / int64(bucket)
	for m.current < b {
		m.current++
		if b-m.current >= 10 {
			m.current = b // a gap of more than a second: start afresh
			m.calls, m.errors = [10]int{}, [10]int{}
		}
		m.calls[m.current%10], m.errors[m.current%10] = 0, 0
	}
	m.calls[b%10]++
	if failed {
		m.errors[b%10]++
	}
	// The nine full buckets and the elapsed part of the current one.
	elapsed := 0.9 + float64(now.UnixNano()%int64(bucket))/float64(time.Second)
	var calls, errs int
	for i := range 10 {
		calls += m.calls[i]
		errs += m.errors[i]
	}
	return float64(calls) / elapsed, float64(errs) / elapsed
}

// PeakInFlight is the most calls the server has answered at once.
func (s *Server) PeakInFlight() int64 { return s.peak.Load() }

// HealthCheck answers with the health status and the server's name.
func (s *Server) HealthCheck(ctx context.Context, _ *pb.HealthCheckRequest) (*pb.HealthCheckResponse, error) {
	if err := s.behave(ctx); err != nil {
		return nil, err
	}
	st := "NOT_SERVING"
	if s.Serving() {
		st = "SERVING"
	}
	return &pb.HealthCheckResponse{Status: st, Server: s.cfg.Name, Time: timestamppb.Now()}, nil
}

// GetUserData returns made-up data for a user. An empty id is invalid;
// ids starting with "missing" are not found, so clients can see errors.
func (s *Server) GetUserData(ctx context.Context, req *pb.GetUserDataRequest) (*pb.GetUserDataResponse, error) {
	if req.GetUserId() == "" {
		return nil, status.Error(codes.InvalidArgument, "user_id is required")
	}
	if err := s.behave(ctx); err != nil {
		return nil, err
	}
	if strings.HasPrefix(req.GetUserId(), "missing") {
		return nil, status.Errorf(codes.NotFound, "no user %q", req.GetUserId())
	}
	attrs := map[string]string{"tier": "standard"}
	// Echo request metadata whose keys start with "x-", so clients can see
	// what they sent.
	md, _ := metadata.FromIncomingContext(ctx)
	for k, v := range md {
		if strings.HasPrefix(k, "x-") && len(v) > 0 {
			attrs[k] = v[0]
		}
	}
	return &pb.GetUserDataResponse{
		UserId:      req.GetUserId(),
		DisplayName: "User " + req.GetUserId(),
		Attributes:  attrs,
		Server:      s.cfg.Name,
	}, nil
}

// WatchUserEvents streams count events (3 by default), interval_ms apart.
func (s *Server) WatchUserEvents(req *pb.WatchUserEventsRequest, stream grpc.ServerStreamingServer[pb.UserEvent]) error {
	if req.GetUserId() == "" {
		return status.Error(codes.InvalidArgument, "user_id is required")
	}
	if err := s.behave(stream.Context()); err != nil {
		return err
	}
	count := int(req.GetCount())
	if count <= 0 {
		count = 3
	}
	interval := time.Duration(req.GetIntervalMs()) * time.Millisecond
	kinds := []string{"login", "read", "write", "logout"}
	for i := range count {
		if i > 0 && interval > 0 {
			select {
			case <-time.After(interval):
			case <-stream.Context().Done():
				return status.FromContextError(stream.Context().Err()).Err()
			}
		}
		ev := &pb.UserEvent{UserId: req.GetUserId(), Sequence: int64(i + 1), Kind: kinds[i%len(kinds)], Server: s.cfg.Name}
		if err := stream.Send(ev); err != nil {
			return err
		}
	}
	return nil
}

// RecordUserEvents counts the events a client streams; an event without a
// user id is invalid.
func (s *Server) RecordUserEvents(stream grpc.ClientStreamingServer[pb.UserEvent, pb.RecordUserEventsResponse]) error {
	if err := s.behave(stream.Context()); err != nil {
		return err
	}
	var n int32
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&pb.RecordUserEventsResponse{Count: n, Server: s.cfg.Name})
		}
		if err != nil {
			return err
		}
		if ev.GetUserId() == "" {
			return status.Errorf(codes.InvalidArgument, "event %d: user_id is required", n+1)
		}
		n++
	}
}

// EchoUserEvents answers every event as it comes, with the server's name.
func (s *Server) EchoUserEvents(stream grpc.BidiStreamingServer[pb.UserEvent, pb.UserEvent]) error {
	if err := s.behave(stream.Context()); err != nil {
		return err
	}
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		ev.Server = s.cfg.Name
		if err := stream.Send(ev); err != nil {
			return err
		}
	}
}
