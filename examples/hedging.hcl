# Three servers with a heavy tail: a call takes 5 ms at the median and
# 200 ms at the 99th percentile. Hedging sends a second copy to another
# server when the first has not answered in 60 ms (about the 95th
# percentile); compare the same traffic with and without:
#
#   pvlb simulate -c examples/hedging.hcl -s peervault -n 40000
#   pvlb simulate -c examples/hedging.hcl -s unhedged -n 40000

discovery "static" "fleet" {
  endpoint "server1" { address = "127.0.0.1:50051" }
  endpoint "server2" { address = "127.0.0.1:50052" }
  endpoint "server3" { address = "127.0.0.1:50053" }
}

service "peervault" {
  discovery = discovery.static.fleet
  hedging {
    max_attempts = 2
    delay        = "60ms"
    methods      = ["GetUserData", "HealthCheck"] # idempotent: safe to run twice
  }
}

service "unhedged" {
  discovery = discovery.static.fleet
}

simulation "peervault" {
  server "*" { latency = "lognormal(5ms, 200ms)" }
}

simulation "unhedged" {
  server "*" { latency = "lognormal(5ms, 200ms)" }
}
