# A discovery kind with no plugin; validate says where it looked.
# checked by: pvlb validate (plugin lookup), not by the config loader alone
# want: 5:11 Unknown discovery kind: Did you mean "static"?

discovery "statc" "local" {
  endpoint "server1" { address = "127.0.0.1:50051" }
}

service "peervault" {
  discovery = discovery.statc.local
}
