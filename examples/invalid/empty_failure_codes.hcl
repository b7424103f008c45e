# An outcomes block that blames the endpoint for nothing.
# want: 11:21 No failure codes: Remove the attribute to use the defaults

discovery "static" "local" {
  endpoint "server1" { address = "127.0.0.1:50051" }
}

service "peervault" {
  discovery = discovery.static.local
  outcomes {
    failure_codes = []
  }
}
