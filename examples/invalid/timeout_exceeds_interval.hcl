# A health check timeout as long as its interval.
# want: 6:25 Health check timeout too long: must be shorter than interval

health_policy "slow" {
  interval            = "5s"
  timeout             = "5s"
}

discovery "static" "local" {
  endpoint "server1" { address = "127.0.0.1:50051" }
}

service "peervault" {
  discovery = discovery.static.local
  health    = health_policy.slow
}
