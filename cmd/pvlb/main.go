// Command pvlb checks, simulates and drives client-side load balancing for
// gRPC services, configured in HCL.
package main

import (
	"os"
)

func main() {
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}
