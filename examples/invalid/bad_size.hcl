# A message size in an unknown unit.
# want: 11:24 Invalid size: want a number of bytes

discovery "static" "local" {
  endpoint "server1" { address = "127.0.0.1:50051" }
}

service "peervault" {
  discovery = discovery.static.local
  client {
    max_receive_size = "8 megs"
  }
}
