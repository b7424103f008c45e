# A simulation block naming a service that is not declared.
# want: 12:12 Simulation of an undeclared service: Did you mean "peervault"?

discovery "static" "local" {
  endpoint "server1" { address = "127.0.0.1:50051" }
}

service "peervault" {
  discovery = discovery.static.local
}

simulation "peervalt" {
  server "server1" { latency = "20ms" }
}
