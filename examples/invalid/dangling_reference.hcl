# The service refers to a strategy that is not declared.
# want: 14:15 Reference to undeclared strategy: Did you mean "weighted_primary"?

strategy "weighted_primary" {
  kind = "weighted"
}

discovery "static" "local" {
  endpoint "server1" { address = "127.0.0.1:50051" }
}

service "peervault" {
  discovery = discovery.static.local
  strategy  = strategy.weighted_primery
}
