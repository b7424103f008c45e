# A primary, a secondary and a backup server taking 5/8, 2/8 and 1/8 of
# the traffic. The simulation block says how each server behaves in
# `pvlb simulate`; it has no effect on real traffic.
#
#   pvlb simulate -c examples/weighted.hcl --requests 10000
#   pvlb simulate -c examples/weighted.hcl --down secondary@2s-5s

strategy "weighted_primary" {
  kind = "weighted"
}

health_policy "fast" {
  interval            = "1s"
  timeout             = "250ms"
  unhealthy_threshold = 3
  healthy_threshold   = 2
  service             = "peervault.PeerVaultService"
}

discovery "static" "tiers" {
  endpoint "primary" {
    address = "127.0.0.1:50051"
    weight  = 5
    zone    = "a"
  }
  endpoint "secondary" {
    address = "127.0.0.1:50052"
    weight  = 2
    zone    = "b"
  }
  endpoint "backup" {
    address = "127.0.0.1:50053"
    weight  = 1
    zone    = "c"
  }
}

service "peervault" {
  discovery = discovery.static.tiers
  strategy  = strategy.weighted_primary
  health    = health_policy.fast

  retry {
    max_retries      = 3
    delay            = "20ms"
    failover_timeout = "2s"
  }
}

# How each server behaves in `pvlb simulate`, by endpoint id or pattern
# ("*", "db-*"), for endpoints from any discovery kind.
simulation "peervault" {
  server "primary" {
    latency  = "lognormal(8ms, 30ms)"
    capacity = 64
  }
  server "secondary" {
    latency  = "lognormal(12ms, 50ms)"
    capacity = 32
  }
  server "backup" {
    latency    = "normal(25ms, 5ms)"
    error_rate = 0.01
    capacity   = 16
  }
}
