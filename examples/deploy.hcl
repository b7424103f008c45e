# A rolling deploy under a rising load: the offered load ramps from 1,000 to
# 4,000 requests a second; a new server joins cold (its caches empty, eight
# times slower at first, warming over 20 s); then an old one is drained and
# comes back on the new version, cold too. Compare a plain strategy with
# one that ramps a newcomer's share up (Envoy's slow start):
#
#   pvlb simulate -c examples/deploy.hcl --scenario deploy --compare round_robin,least_connections,gentle,fastest

strategy "gentle" {
  kind = "least_connections"
  slow_start {
    window = "20s"
  }
}

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
  endpoint "server4" { address = "127.0.0.1:50054" }
}

service "peervault" {
  discovery = discovery.static.fleet
  health    = health_policy.quick
}

simulation "peervault" {
  server "*" {
    latency         = "lognormal(10ms, 30ms)"
    capacity        = 32
    cold_start      = "20s"
    cold_start_slow = 8
  }
}

scenario "deploy" {
  service  = "peervault"
  duration = "60s"
  rps      = 1000

  at "0s" {
    server "server4" { discovered = false } # not deployed yet
  }
  at "5s" {
    rps  = 4000
    ramp = "20s"
  }
  at "15s" {
    server "server4" { discovered = true } # the new server joins, cold
  }
  at "35s" {
    server "server1" { discovered = false } # drained for its upgrade
  }
  at "40s" {
    server "server1" { discovered = true } # back on the new version, cold
  }
}
