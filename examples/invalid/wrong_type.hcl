# A string where a number belongs.
# want: 9:15 Unsuitable value type: a number is required

strategy "w" { kind = "weighted" }

discovery "static" "local" {
  endpoint "server1" {
    address = "127.0.0.1:50051"
    weight  = "heavy"
  }
}

service "peervault" {
  discovery = discovery.static.local
  strategy  = strategy.w
}
