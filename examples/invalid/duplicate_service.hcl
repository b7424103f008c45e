# Two services share a name; the error cites the first.
# want: 12:1 Duplicate service: already declared at
discovery "static" "local" {
  endpoint "server1" { address = "127.0.0.1:50051" }
}

service "peervault" {
  discovery = discovery.static.local
}

# The second declaration is the mistake.
service "peervault" {
  discovery = discovery.static.local
}
