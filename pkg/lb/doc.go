// Package lb is the core of pvlb: strategy pickers over an immutable
// endpoint snapshot, and the LoadBalancer that owns endpoints, their health,
// in-flight counts, sticky sessions and statistics.
//
// A pick reads the current snapshot through an atomic pointer: it takes no
// lock and allocates nothing. Every change to the endpoint set or to an
// endpoint's eligibility builds a new snapshot, so writers pay and readers do
// not. The pickers hold no gRPC types, which lets the simulator in pkg/sim
// drive exactly the code that serves real traffic.
package lb
