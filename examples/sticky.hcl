# Sticky sessions: every call carrying the same session id (lb.WithSession
# in Go, or the "session-id" request metadata) goes to the same server for
# as long as that server stays healthy and the session is used at least
# once every 10 minutes.
#
#   pvlb simulate -c examples/sticky.hcl --sessions 50

strategy "sticky_least_loaded" {
  kind = "least_connections"
  sticky_session {
    enabled = true
    ttl     = "10m"
    key     = "session-id"
  }
}

discovery "static" "local" {
  endpoint "server1" { address = "127.0.0.1:50051" }
  endpoint "server2" { address = "127.0.0.1:50052" }
  endpoint "server3" { address = "127.0.0.1:50053" }
}

service "peervault" {
  discovery = discovery.static.local
  strategy  = strategy.sticky_least_loaded
}
