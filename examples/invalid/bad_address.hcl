# An address without a port.
# want: 6:34 Invalid address: no port

discovery "static" "local" {
  endpoint "server1" { address = "127.0.0.1:50051" }
  endpoint "server2" { address = "127.0.0.1" }
}

service "peervault" {
  discovery = discovery.static.local
}
