# A bad deploy on one of three servers: from 5 s on it fails every call at
# once with UNAVAILABLE, at 3,000 requests a second. Every client retries
# UNAVAILABLE, as gRPC clients do. With Finagle's retry budget (on by
# default: 20% of calls plus 10 a second), retries stop short of adding a
# third to the load; without one, every failed call is retried:
#
#   pvlb simulate -c examples/retry-storm.hcl -s peervault --scenario bad_deploy
#   pvlb simulate -c examples/retry-storm.hcl -s unbudgeted --scenario bad_deploy_unbudgeted

discovery "static" "fleet" {
  endpoint "server1" { address = "127.0.0.1:50051" }
  endpoint "server2" { address = "127.0.0.1:50052" }
  endpoint "server3" { address = "127.0.0.1:50053" }
}

service "peervault" {
  discovery = discovery.static.fleet
  retry {
    max_retries     = 3
    initial_backoff = "10ms"
    per_try_timeout = "500ms"
  }
}

service "unbudgeted" {
  discovery = discovery.static.fleet
  retry {
    max_retries     = 3
    initial_backoff = "10ms"
    per_try_timeout = "500ms"
    budget {
      enabled = false
    }
  }
}

simulation "peervault" {
  server "*" {
    latency  = "lognormal(10ms, 30ms)"
    capacity = 16
  }
}

simulation "unbudgeted" {
  server "*" {
    latency  = "lognormal(10ms, 30ms)"
    capacity = 16
  }
}

scenario "bad_deploy" {
  service  = "peervault"
  duration = "30s"
  rps      = 3000
  at "5s" {
    server "server3" {
      latency    = "1ms"
      error_rate = 1
      error_code = "UNAVAILABLE"
    }
  }
}

scenario "bad_deploy_unbudgeted" {
  service  = "unbudgeted"
  duration = "30s"
  rps      = 3000
  at "5s" {
    server "server3" {
      latency    = "1ms"
      error_rate = 1
      error_code = "UNAVAILABLE"
    }
  }
}
