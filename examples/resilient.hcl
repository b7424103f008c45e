# A service that learns from every call: peak_ewma keeps a slow server out
# of the tail, outlier detection ejects one that fails while passing its
# health checks, and panic mode stops a mostly-down fleet from piling every
# call onto the few servers left. The simulation block makes server3 slow
# and server4 flaky, so that `pvlb simulate` shows all of it:
#
#   pvlb simulate -c examples/resilient.hcl --requests 20000 --rps 2000
#   pvlb simulate -c examples/resilient.hcl --requests 20000 --rps 2000 --strategy round_robin

strategy "fastest" {
  kind = "peak_ewma"
  # Two of these four servers misbehave: two random choices would both be
  # bad one pick in six, three never are.
  choice_count = 3
  decay        = "10s"
  default_rtt  = "30ms"

  # A server that joins or comes back gets its share over 30 seconds.
  slow_start {
    window = "30s"
  }
}

discovery "static" "fleet" {
  endpoint "server1" { address = "127.0.0.1:50051" }
  endpoint "server2" { address = "127.0.0.1:50052" }
  endpoint "server3" { address = "127.0.0.1:50053" }
  endpoint "server4" { address = "127.0.0.1:50054" }
}

service "peervault" {
  discovery       = discovery.static.fleet
  strategy        = strategy.fastest
  panic_threshold = 50

  outcomes {
    failure_codes = ["UNKNOWN", "DEADLINE_EXCEEDED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"]
  }

  outlier_detection {
    interval             = "2s"
    base_ejection_time   = "30s"
    max_ejection_percent = 25
    consecutive_failures = 5
    failure_percentage {
      threshold     = 20
      minimum_hosts = 3
    }
  }
}

simulation "peervault" {
  server "*" { latency = "lognormal(10ms, 30ms)" }
  server "server3" { latency = "lognormal(100ms, 300ms)" }
  server "server4" { error_rate = 0.3 }
}
