package orcaload_test

import (
	"context"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/orca"
)

// A Go server reports its load for weighted_round_robin with grpc-go's
// orca package: in every call's trailers and on ORCA's out-of-band
// service. docs/grpc.md shows the same.
func Example_server() {
	recorder := orca.NewServerMetricsRecorder()
	srv := grpc.NewServer(
		orca.CallMetricsServerOption(recorder), // trailers carry the recorder's values
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			// A call's trailers carry a report only if its handler asks
			// for the call's recorder.
			orca.CallMetricsRecorderFromContext(ctx)
			return handler(ctx, req)
		}),
	)
	if err := orca.Register(srv, orca.ServiceOptions{ServerMetricsProvider: recorder}); err != nil {
		panic(err)
	}
	// ... register your services, then, as the load changes (every second,
	// say):
	recorder.SetCPUUtilization(0.42) // the share of the machine in use
	recorder.SetQPS(850)             // requests answered a second
	recorder.SetEPS(3)               // of which errors

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() { _ = srv.Serve(lis) }()
	srv.Stop()
	// Output:
}
