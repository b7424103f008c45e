# An attribute the retry block does not have (it is max_retries).
# want: 11:5 Unsupported argument: An argument named "max_retry" is not expected here

discovery "static" "local" {
  endpoint "server1" { address = "127.0.0.1:50051" }
}

service "peervault" {
  discovery = discovery.static.local
  retry {
    max_retry = 3
  }
}
