# The strategy kind is misspelt; validate suggests the right one.
# want: 5:10 Unknown strategy kind: Did you mean "round_robin"?

strategy "rr" {
  kind = "round_robbin"
}

discovery "static" "local" {
  endpoint "server1" { address = "127.0.0.1:50051" }
}

service "peervault" {
  discovery = discovery.static.local
  strategy  = strategy.rr
}
