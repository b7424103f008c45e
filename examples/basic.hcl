# Three PeerVault servers on this machine, balanced round robin.
#
#   pvlb validate -c examples/basic.hcl
#   pvlb simulate -c examples/basic.hcl --requests 10000

discovery "static" "local" {
  endpoint "server1" { address = "127.0.0.1:50051" }
  endpoint "server2" { address = "127.0.0.1:50052" }
  endpoint "server3" { address = "127.0.0.1:50053" }
}

service "peervault" {
  discovery = discovery.static.local
  # No strategy, health or retry settings: the defaults apply
  # (round_robin; checks every 30s with a 5s timeout; 3 retries 1s apart).
}
