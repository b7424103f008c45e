# A reference written as a string; references are bare, like strategy.rr.
# want: 14:15 Invalid reference: Write it without quotes: strategy = strategy.rr

strategy "rr" {
  kind = "round_robin"
}

discovery "static" "local" {
  endpoint "server1" { address = "127.0.0.1:50051" }
}

service "peervault" {
  discovery = discovery.static.local
  strategy  = "rr"
}
