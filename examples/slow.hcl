# Four PeerVault servers, two of them ten times slower than the others
# (the case where brpc found that two random choices are not enough), and
# strategies to compare on them side by side (docs/strategies.md):
#
#   pvlb simulate -c examples/slow.hcl --requests 20000 --rps 2000 --strategy round_robin
#   pvlb simulate -c examples/slow.hcl --requests 20000 --rps 2000 --strategy two_choices
#   pvlb simulate -c examples/slow.hcl --requests 20000 --rps 2000 --strategy three_choices
#
# The floor, what the fast servers give alone:
#
#   pvlb simulate -c examples/slow.hcl --requests 20000 --rps 2000 --down server3@0s --down server4@0s

# peak_ewma's defaults: two random servers, cost = latency × √(in flight + 1).
strategy "two_choices" {
  kind = "peak_ewma"
}

# Three of four always include a fast server.
strategy "three_choices" {
  kind         = "peak_ewma"
  choice_count = 3
}

# tower's, Finagle's and Linkerd's cost, linear in the calls in flight.
strategy "linear" {
  kind                = "peak_ewma"
  choice_count        = 3
  active_request_bias = 1
}

discovery "static" "fleet" {
  endpoint "server1" { address = "127.0.0.1:50051" }
  endpoint "server2" { address = "127.0.0.1:50052" }
  endpoint "server3" { address = "127.0.0.1:50053" }
  endpoint "server4" { address = "127.0.0.1:50054" }
}

service "peervault" {
  discovery = discovery.static.fleet
}

simulation "peervault" {
  server "*" { latency = "lognormal(10ms, 30ms)" }
  server "server3" { latency = "lognormal(100ms, 300ms)" }
  server "server4" { latency = "lognormal(100ms, 300ms)" }
}
