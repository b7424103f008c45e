# A bad day for three PeerVault servers, as a scenario: one slows down,
# another starts failing half its calls while its health checks pass, the
# third goes down for three seconds, then things mend. Compare how the
# strategies would have handled it:
#
#   pvlb simulate -c examples/bad-day.hcl --scenario bad_day --compare round_robin,least_connections,fastest

strategy "fastest" {
  kind = "peak_ewma"
}

health_policy "quick" {
  interval = "1s"
  timeout  = "250ms"
}

discovery "static" "fleet" {
  endpoint "server1" { address = "127.0.0.1:50051" }
  endpoint "server2" { address = "127.0.0.1:50052" }
  endpoint "server3" { address = "127.0.0.1:50053" }
}

service "peervault" {
  discovery = discovery.static.fleet
  health    = health_policy.quick

  outlier_detection {
    interval = "2s"
    failure_percentage {
      threshold     = 20
      minimum_hosts = 3
    }
  }
}

simulation "peervault" {
  server "*" { latency = "lognormal(10ms, 30ms)" }
}

scenario "bad_day" {
  service  = "peervault"
  requests = 60000
  rps      = 2000

  at "5s" {
    server "server2" { latency = "lognormal(100ms, 300ms)" }
  }
  at "10s" {
    server "server3" { error_rate = 0.5 }
  }
  at "15s" {
    server "server1" { down = true }
  }
  at "18s" {
    server "server1" { down = false }
  }
  at "25s" {
    server "server2" { latency = "lognormal(10ms, 30ms)" }
  }
}
