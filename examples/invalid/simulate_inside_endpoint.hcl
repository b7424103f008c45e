# Simulation settings inside an endpoint, where older configurations kept
# them; they now live in a top-level simulation block.
# want: 8:5 Simulation settings have moved: simulation "SERVICE"

discovery "static" "local" {
  endpoint "server1" {
    address = "127.0.0.1:50051"
    simulate {
      latency = "20ms"
    }
  }
}

service "peervault" {
  discovery = discovery.static.local
}
