// Package grpcpolicy plugs pvlb's balancer core into a plain grpc-go
// channel: a resolver for targets "pvlb:///SERVICE" and the load balancing
// policy "pvlb", which picks with the service's lb.LoadBalancer (the same
// strategy, health and sticky sessions as rpc.LoadBalancedClient) and
// reports every call's outcome back to it.
//
// Like grpc-go's own policies, it registers itself when imported; the core
// in pkg/lb registers nothing.
package grpcpolicy
