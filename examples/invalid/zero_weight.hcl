# A weight of zero; weights are whole numbers from 1.
# want: 10:15 Invalid weight: not 0

strategy "w" { kind = "weighted" }

discovery "static" "local" {
  endpoint "server1" { address = "127.0.0.1:50051" }
  endpoint "server2" {
    address = "127.0.0.1:50052"
    weight  = 0
  }
}

service "peervault" {
  discovery = discovery.static.local
  strategy  = strategy.w
}
