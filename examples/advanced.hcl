# PeerVault's advanced configuration from its original design: weighted
# primary/secondary/backup, fast health checks, five retries, sticky
# sessions and 8 MiB messages; plus a replica pool balanced by least load.
#
#   pvlb validate -c examples/advanced.hcl

strategy "weighted_primary" {
  kind = "weighted"
  sticky_session {
    enabled = true
    ttl     = "10m"
  }
}

strategy "least_loaded" {
  kind         = "least_connections"
  choice_count = 2
}

health_policy "fast" {
  interval            = "15s"
  timeout             = "3s"
  unhealthy_threshold = 3
  healthy_threshold   = 2
  service             = "peervault.PeerVaultService"
}

discovery "static" "tiers" {
  endpoint "primary" {
    address  = "primary.example.com:50051"
    weight   = 5
    zone     = "eu-west-1a"
    metadata = { tier = "primary" }
  }
  endpoint "secondary" {
    address  = "secondary.example.com:50051"
    weight   = 2
    zone     = "eu-west-1b"
    metadata = { tier = "secondary" }
  }
  endpoint "backup" {
    address  = "backup.example.com:50051"
    weight   = 1
    zone     = "eu-west-1c"
    metadata = { tier = "backup" }
  }
}

discovery "static" "replicas" {
  endpoint "replica1" { address = "replica-1.example.com:50051" }
  endpoint "replica2" { address = "replica-2.example.com:50051" }
  endpoint "replica3" { address = "replica-3.example.com:50051" }
  endpoint "replica4" { address = "replica-4.example.com:50051" }
}

service "peervault" {
  discovery = discovery.static.tiers
  strategy  = strategy.weighted_primary
  health    = health_policy.fast

  retry {
    max_retries      = 5
    delay            = "2s"
    failover_timeout = "15s"
  }

  # Which results count against the server that answered; other errors
  # (INVALID_ARGUMENT, NOT_FOUND, a call the caller cancelled) are neutral.
  outcomes {
    failure_codes = ["UNKNOWN", "DEADLINE_EXCEEDED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "RESOURCE_EXHAUSTED"]
  }

  client {
    connection_timeout = "30s"
    keepalive_interval = "30s"
    keepalive_timeout  = "5s"
    max_receive_size   = "8MiB"
    max_send_size      = "8MiB"
    user_agent         = "peervault-grpc-client/1.0"
  }
}

service "peervault_replicas" {
  discovery = discovery.static.replicas
  strategy  = strategy.least_loaded
  health    = health_policy.fast
}
