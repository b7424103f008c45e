# A duration without a unit.
# want: 5:25 Invalid duration: is not a duration

health_policy "fast" {
  interval            = "15"
  timeout             = "3s"
}

discovery "static" "local" {
  endpoint "server1" { address = "127.0.0.1:50051" }
}

service "peervault" {
  discovery = discovery.static.local
  health    = health_policy.fast
}
